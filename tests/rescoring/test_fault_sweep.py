"""Fault sweep: every bad input of the rescoring entry points is one clear line, exit status 2.

Each case builds one bad input in a copy of a tiny finished run (inputs, a stand-in for every
kind of wrong checkpoint, ``rnnt_1best`` + ``lm`` system folders written by the real entry
points, an experiment matrix), calls the entry point's ``main(argv)`` in-process and checks:
exit status 2, exactly one stderr line ``<prog>: error: ...`` (the last one) naming the file
(and the line / utterance id where there is one), no traceback, and no staging folder left
behind.

Why one long file (~1,100 lines): it is a table of some 150 independent cases of a few lines
each, registered with ``@case`` next to the one harness and the one finished run they share;
read top to bottom it is the list of inputs the entry points reject, by entry point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gzip
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from common.io import dir_lock
from rescoring import report, rescore, score, systems, tune
from rescoring.outputs import sha256
from tests.rescoring.conftest import bigram, build_tiny, gold_record, nbest_record, write_lines

MAINS: dict[str, Callable] = {
    "rescore-nbest": rescore.main,
    "tune-rescoring": tune.main,
    "score-wer": score.main,
    "make-report": report.main,
    "rescore-systems": systems.main,
}


@dataclasses.dataclass
class Bad:
    """What a case gives the entry point, and what its error line must name."""

    argv: list[str]
    expect: list[str]
    lock: Path | None = None  # a folder whose dir_lock another "process" holds
    readonly: Path | None = None  # a folder made read-only


CASES: dict[str, tuple[str, Callable[[Path], Bad]]] = {}


def case(name: str, prog: str):
    def add(build: Callable[[Path], Bad]) -> Callable[[Path], Bad]:
        assert name not in CASES, name
        CASES[name] = (prog, build)
        return build

    return add


# ---------------------------------------------------------------- the tiny finished run


def _checkpoints(d: Path) -> None:
    import torch

    from asr.config import ModelConfig as AsrModelConfig
    from lm.config import ModelConfig as LmModelConfig

    d.mkdir()
    asr_cfg = json.loads(json.dumps(dataclasses.asdict(AsrModelConfig()), default=str))
    lm_cfg = dataclasses.asdict(LmModelConfig())
    torch.save({"model": {"w": torch.zeros(64, 64)}, "config": {"model": lm_cfg}}, d / "full.pt")
    full = (d / "full.pt").read_bytes()
    (d / "truncated.pt").write_bytes(full[: len(full) // 2])
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(bytes(range(256)) * 8)
    (d / "folder.pt").mkdir()
    torch.save(torch.zeros(3), d / "tensor.pt")
    torch.save({"weights": torch.zeros(3)}, d / "nomodel.pt")
    torch.save(
        {"model": {"enc.w": torch.zeros(2)}, "config": {"model": asr_cfg}, "epoch": 3},
        d / "asr.pt",
    )
    torch.save(
        {"model": {}, "config": {"model": lm_cfg}, "tokenizer": torch.arange(64)},
        d / "badtok.pt",
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    w = build_tiny(tmp_path_factory.mktemp("sweep") / "w")
    _checkpoints(w / "ckpt")
    rd = w / "rescore"
    for s in ("dev", "test"):
        rescore.main(
            ["--nbest", str(w / f"nbest-{s}.jsonl"), "--scorer", "none"]
            + ["--out-dir", str(rd / "rnnt_1best"), "--set-name", s]
        )
    lm = rd / "lm"
    tune.main(["--nbest", str(w / "nbest-dev.jsonl"), "--out-dir", str(lm), *bigram(w)])
    rescore.main(
        ["--nbest", str(w / "nbest-test.jsonl"), "--params", str(lm / "tuned.json")]
        + ["--out-dir", str(lm), "--set-name", "test"]
    )
    for system in ("rnnt_1best", "lm"):
        for s in ("dev", "test"):
            score.main(_score_argv(w, rd / system / f"onebest-{s}.jsonl.gz", s, system))
    (rd / "lm" / "cmd.sh").write_text("tune-rescoring ...\n")
    (w / "systems.toml").write_text(MATRIX.replace("LM_CHECKPOINT", str(w / "ckpt" / "full.pt")))
    (w / "dec").mkdir()
    for s in ("dev", "test"):
        (w / "dec" / f"nbest-{s}.jsonl.gz").write_bytes(
            gzip.compress((w / f"nbest-{s}.jsonl").read_bytes())
        )
    return w


MATRIX = """
headline = "lm"
first_pass = "rnnt_1best"
oracle = "oracle"
comparisons = [{ a = "rnnt_1best", b = "lm" }]
targets = [{ against = "rnnt_1best", metric = "wer" }]
[systems.rnnt_1best]
label = "1-best"
[systems.oracle]
label = "oracle"
select = "oracle"
[systems.lm]
label = "+ LM"
lm_checkpoint = "LM_CHECKPOINT"
"""


def _score_argv(w: Path, hyps: Path, s: str = "test", system: str = "lm", gold=None):
    return [
        "--hyps",
        str(hyps),
        "--gold",
        str(gold or w / f"gold-{s}.jsonl"),
        "--word-counts",
        str(w / "counts.txt"),
        "--out-dir",
        str(hyps.parent),
        "--set-name",
        s,
        "--system",
        system,
        "--bootstrap-samples",
        "20",
    ]


def _rescore_argv(w: Path, nbest: Path, *extra: str) -> list[str]:
    return ["--nbest", str(nbest), "--out-dir", str(w / "out"), *(extra or ("--scorer", "none"))]


def _report_argv(w: Path, *extra: str) -> list[str]:
    return ["--systems", str(w / "systems.toml"), "--rescore-dir", str(w / "rescore")] + [
        "--out",
        str(w / "RESULTS.md"),
        *extra,
    ]


def _systems_argv(w: Path, *extra: str, drop: str = "") -> list[str]:
    opts = {
        "--systems": str(w / "systems.toml"),
        "--nbest-dir": str(w / "dec"),
        "--gold": str(w / "gold-{set}.jsonl"),
        "--word-counts": str(w / "counts.txt"),
        "--out-dir": str(w / "sysout"),
    }
    return [a for k, v in opts.items() if k != drop for a in (k, v)] + list(extra)


def _rehash(folder: Path, name: str) -> None:
    """Make the set manifest vouch for an edited file (as an older, buggy writer might have)."""
    for m in folder.glob("set-*.json"):
        data = json.loads(m.read_text())
        if name in data["files"]:
            data["files"][name] = sha256(folder / name)
            m.write_text(json.dumps(data))


# ---------------------------------------------------------------- rescore-nbest: n-best fields

GOOD_HYP = {"words": "will it rain", "tokens": [4, 5], "am_score": -1.0}
NBEST_FIELDS = {
    "words-null": ({"words": None}, "field 'hyps[1].words' must be a string, got null"),
    "words-list": ({"words": ["will", "it", "rain"]}, "field 'hyps[1].words' must be a string"),
    "words-number": ({"words": 7}, "field 'hyps[1].words' must be a string, got 7"),
    "tokens-strings": ({"tokens": ["4"]}, "field 'hyps[1].tokens' must be a list of integers"),
    "tokens-bools": ({"tokens": [True]}, "field 'hyps[1].tokens' must be a list of integers"),
    "am-bool": ({"am_score": True}, "field 'hyps[1].am_score' must be a number, got true"),
    "am-string": ({"am_score": "-1.5"}, "field 'hyps[1].am_score' must be a number"),
    "am-null": ({"am_score": None}, "field 'hyps[1].am_score' must be a number, got null"),
    "am-nan": ({"am_score": float("nan")}, "field 'hyps[1].am_score' must be a finite number"),
    "lm-score-string": ({"lm_score": "x"}, "field 'hyps[1].lm_score' must be a number"),
    "total-bool": ({"total": False}, "field 'hyps[1].total' must be a number, got false"),
}
RECORD_FIELDS = {
    "ref-null": ({"ref": None}, "field 'ref' must be a string, got null"),
    "ref-list": ({"ref": ["will"]}, "field 'ref' must be a string"),
    "id-int": ({"id": 3}, "field 'id' must be a non-empty string, got 3"),
    "id-empty": ({"id": ""}, "field 'id' must be a non-empty string"),
    "hyps-empty": ({"hyps": []}, "field 'hyps' must be a non-empty list of hypotheses"),
    "hyps-object": ({"hyps": {"words": "a"}}, "field 'hyps' must be a non-empty list"),
    "hyps-strings": ({"hyps": ["will it rain"]}, "field 'hyps[0]' must be an object"),
}


def _nbest_field_case(name: str, hyp_change: dict | None, rec_change: dict | None, msg: str):
    @case(f"nbest-{name}", "rescore-nbest")
    def build(w: Path) -> Bad:
        rec = {
            "id": "u2",
            "ref": "will it rain",
            "hyps": [GOOD_HYP, {**GOOD_HYP, **(hyp_change or {})}],
        }
        rec.update(rec_change or {})
        p = write_lines(w / "nb.jsonl", [nbest_record("u1", "a", [("a", -1.0)]), rec])
        where = f"{p}:2 (u2)" if isinstance(rec.get("id"), str) and rec["id"] else f"{p}:2"
        return Bad(_rescore_argv(w, p), [f"{where}: {msg}"])


for _n, (_c, _m) in NBEST_FIELDS.items():
    _nbest_field_case(_n, _c, None, _m)
for _n, (_c, _m) in RECORD_FIELDS.items():
    _nbest_field_case(_n, None, _c, _m)


@case("nbest-missing-ref", "rescore-nbest")
def _(w):
    p = write_lines(w / "nb.jsonl", [{"id": "u1", "hyps": [GOOD_HYP]}])
    return Bad(_rescore_argv(w, p), [f"{p}:1 (u1): missing field 'ref'"])


@case("nbest-invalid-json", "rescore-nbest")
def _(w):
    p = write_lines(w / "nb.jsonl", [nbest_record("u1", "a", [("a", -1)]), "{not json"])
    return Bad(_rescore_argv(w, p), [f"{p}:2: invalid JSON"])


@case("nbest-not-an-object", "rescore-nbest")
def _(w):
    p = write_lines(w / "nb.jsonl", ["[1, 2]"])
    return Bad(_rescore_argv(w, p), [f"{p}:1: expected a JSON object"])


@case("nbest-duplicate-id", "rescore-nbest")
def _(w):
    r = nbest_record("u1", "a", [("a", -1)])
    p = write_lines(w / "nb.jsonl", [r, nbest_record("u2", "b", [("b", -1)]), r])
    return Bad(_rescore_argv(w, p), [f"{p}:3: duplicate utterance id 'u1' (first at line 1)"])


@case("nbest-too-many-hyps", "rescore-nbest")
def _(w):
    p = write_lines(w / "nb.jsonl", [nbest_record("u1", "a", [("a", -1), ("b", -2), ("c", -3)])])
    return Bad(
        _rescore_argv(w, p, "--scorer", "none", "--max-hyps", "2"),
        [f"{p}:1 (u1): 3 hypotheses", "--max-hyps 2"],
    )


@case("nbest-truncated-gzip", "rescore-nbest")
def _(w):
    p = w / "nb.jsonl.gz"
    data = gzip.compress(
        "".join(
            json.dumps(nbest_record(f"u{i}", "a", [("a", -1)])) + "\n" for i in range(200)
        ).encode()
    )
    p.write_bytes(data[: len(data) // 2])
    return Bad(_rescore_argv(w, p), [f"{p}:", "corrupt or truncated"])


@case("nbest-latin1", "rescore-nbest")
def _(w):
    p = w / "nb.jsonl"
    p.write_bytes(
        json.dumps(nbest_record("u1", "café", [("café", -1)]), ensure_ascii=False).encode("latin-1")
    )
    return Bad(_rescore_argv(w, p), [f"{p}:1: not UTF-8"])


@case("nbest-missing-file", "rescore-nbest")
def _(w):
    return Bad(_rescore_argv(w, w / "nope.jsonl"), [f"{w / 'nope.jsonl'}: n-best file not found"])


@case("nbest-rescored-without-manifest", "rescore-nbest")
def _(w):
    (w / "copy").mkdir()
    p = shutil.copy(w / "rescore" / "lm" / "rescored-test.jsonl.gz", w / "copy")
    return Bad(_rescore_argv(w, Path(p)), [f"{p}: no set manifest", "re-run rescore-nbest"])


# ---------------------------------------------------------------- rescore-nbest: external TSV


def _tsv_case(name: str, content: str | bytes, expect: Callable[[Path], list[str]], *extra: str):
    @case(f"tsv-{name}", "rescore-nbest")
    def build(w: Path) -> Bad:
        refs = w / "refs.txt"
        refs.write_text("u1 play jazz\nu2 stop\n")
        p = w / "other.tsv"
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        return Bad(
            _rescore_argv(w, p, "--refs", str(refs), *(extra or ("--scorer", "none"))), expect(p)
        )


_tsv_case(
    "bad-score", "u1\tplay jazz\tabc\n", lambda p: [f"{p}:1 (u1): field 'score' must be a number"]
)
_tsv_case(
    "nan-score",
    "u1\tplay\t-1\nu1\tplay jazz\tnan\n",
    lambda p: [f"{p}:2 (u1): field 'score' must be a finite"],
)
_tsv_case(
    "two-columns",
    "u1\tplay jazz\n",
    lambda p: [f"{p}:1: expected 'utt_id<TAB>text<TAB>score', got 2 fields"],
)
_tsv_case("four-columns", "u1\tplay\tjazz\t-1\n", lambda p: [f"{p}:1: expected", "got 4 fields"])
_tsv_case("spaces-not-tabs", "u1 play jazz -1\n", lambda p: [f"{p}:1: expected", "got 1 fields"])
_tsv_case("empty-id", "u1\tplay\t-1\n\tstop\t-2\n", lambda p: [f"{p}:2: empty utterance id"])
_tsv_case("utf16-bom", "u1\tplay jazz\t-1\n".encode("utf-16"), lambda p: [f"{p}:1: not UTF-8 text"])
_tsv_case(
    "utf16-no-bom",
    "u1\tplay jazz\t-1\n".encode("utf-16-le"),
    lambda p: [f"{p}:1: NUL characters", "UTF-16"],
)
_tsv_case("latin1", "u1\tcafé\t-1\n".encode("latin-1"), lambda p: [f"{p}:1: not UTF-8 text"])
_tsv_case(
    "unknown-utterance", "u9\tplay\t-1\n", lambda p: [f"{p}: no reference for utterance(s) u9"]
)
_tsv_case(
    "too-many-hyps",
    "u1\ta\t-1\nu1\tb\t-2\nu1\tc\t-3\n",
    lambda p: [f"{p}:3 (u1): 3 hypotheses", "--max-hyps 2"],
    "--scorer",
    "none",
    "--max-hyps",
    "2",
)


@case("tsv-no-refs", "rescore-nbest")
def _(w):
    p = w / "other.tsv"
    p.write_text("u1\tplay\t-1\n")
    return Bad(_rescore_argv(w, p), [f"{p}: this n-best form carries no references: pass --refs"])


@case("refs-duplicate-id", "rescore-nbest")
def _(w):
    p = w / "other.tsv"
    p.write_text("u1\tplay\t-1\n")
    refs = w / "refs.txt"
    refs.write_text("u1 play\nu1 stop\n")
    return Bad(
        _rescore_argv(w, p, "--refs", str(refs), "--scorer", "none"),
        [f"{refs}:2: duplicate utterance id 'u1' (first at line 1)"],
    )


@case("refs-text-null", "rescore-nbest")
def _(w):
    p = w / "other.tsv"
    p.write_text("u1\tplay\t-1\n")
    refs = write_lines(w / "sup.jsonl", [{"id": "u1", "text": None}])
    return Bad(
        _rescore_argv(w, p, "--refs", str(refs), "--scorer", "none"),
        [f"{refs}:1 (u1): field 'text' must be a string, got null"],
    )


# ---------------------------------------------------------------- rescore-nbest: lattices


def _lattice(w: Path, cost: float, table: bytes) -> tuple[Path, Path]:
    import kaldifst

    f = kaldifst.StdVectorFst()
    s0, s1 = f.add_state(), f.add_state()
    f.start = s0
    f.add_arc(state=s0, arc=kaldifst.StdArc(1, 1, cost, s1))
    f.set_final(state=s1, weight=0.0)
    writer = kaldifst.VectorFstWriter(f"ark:{w / 'lattices-dev.ark'}")
    writer.write("u1", f)
    writer.close()
    (w / "words-dev.txt").write_bytes(table)
    refs = w / "refs.txt"
    refs.write_text("u1 play\n")
    return w / "lattices-dev.ark", refs


@case("lattice-words-latin1", "rescore-nbest")
def _(w):
    ark, refs = _lattice(w, 1.0, "<eps> 0\ncafé 1\n".encode("latin-1"))
    return Bad(
        _rescore_argv(w, ark, "--refs", str(refs), "--scorer", "none"),
        [f"{w / 'words-dev.txt'}:", "not UTF-8"],
    )


@case("lattice-nan-cost", "rescore-nbest")
def _(w):
    ark, refs = _lattice(w, float("nan"), b"<eps> 0\nplay 1\n")
    return Bad(
        _rescore_argv(w, ark, "--refs", str(refs), "--scorer", "none"),
        [f"{ark}[u1]: path of 'play' has a cost that is not finite"],
    )


@case("lattice-table-duplicate-id", "rescore-nbest")
def _(w):
    ark, refs = _lattice(w, 1.0, b"<eps> 0\nplay 1\nstop 1\n")
    return Bad(
        _rescore_argv(w, ark, "--refs", str(refs), "--scorer", "none"),
        [f"{w / 'words-dev.txt'}:3: id 1 is 'stop' here"],
    )


# ---------------------------------------------------------------- checkpoints of every wrong kind

CKPTS = {
    "missing": "missing.pt",
    "directory": "folder.pt",
    "empty": "empty.pt",
    "random-bytes": "random.pt",
    "truncated": "truncated.pt",
    "tensor": "tensor.pt",
    "no-model": "nomodel.pt",
    "asr-checkpoint": "asr.pt",
    "bad-tokenizer": "badtok.pt",
}


def _ckpt_case(kind: str, file: str, prog: str, option: str):
    @case(f"{prog}-{option.strip('-')}-{kind}", prog)
    def build(w: Path) -> Bad:
        ckpt = w / "ckpt" / file
        if prog == "tune-rescoring":
            argv = [
                "--nbest",
                str(w / "nbest-dev.jsonl"),
                "--out-dir",
                str(w / "out"),
                "--scorer",
                "nlm",
                option,
                str(ckpt),
            ]
        elif option == "--lm-checkpoint":
            argv = _rescore_argv(w, w / "nbest-test.jsonl", "--scorer", "nlm", option, str(ckpt))
        else:
            argv = _rescore_argv(w, w / "nbest-test.jsonl", "--scorer", "none", option, str(ckpt))
        return Bad(argv, [f"error: {ckpt}: "])


for _kind, _file in CKPTS.items():
    _ckpt_case(_kind, _file, "rescore-nbest", "--lm-checkpoint")
for _kind in ("missing", "truncated", "random-bytes", "asr-checkpoint", "bad-tokenizer"):
    _ckpt_case(_kind, CKPTS[_kind], "rescore-nbest", "--nlu-checkpoint")
    _ckpt_case(_kind, CKPTS[_kind], "tune-rescoring", "--lm-checkpoint")


@case("bigram-binary-text", "rescore-nbest")
def _(w):
    ckpt = w / "ckpt" / "random.pt"
    return Bad(
        _rescore_argv(
            w, w / "nbest-test.jsonl", "--scorer", "bigram", "--lm-checkpoint", str(ckpt)
        ),
        [f"{ckpt}:", "not UTF-8"],
    )


@case("scorer-needs-checkpoint", "rescore-nbest")
def _(w):
    return Bad(
        _rescore_argv(w, w / "nbest-test.jsonl", "--scorer", "nlm"),
        ["scorer 'nlm' needs --lm-checkpoint"],
    )


# ---------------------------------------------------------------- rescore-nbest --params


def _params_case(name: str, change: dict, msg: str):
    """``change``: key -> value (``a.b``: field b of object a; ``"<drop>"`` removes it)."""

    @case(f"params-{name}", "rescore-nbest")
    def build(w: Path) -> Bad:
        tuned = json.loads((w / "rescore" / "lm" / "tuned.json").read_text())
        for key, v in change.items():
            *parents, last = key.split(".")
            obj = tuned
            for k in parents:
                obj = obj[k]
            if v == "<drop>":
                del obj[last]
            else:
                obj[last] = v
        p = w / "rescore" / "lm" / "params.json"
        p.write_text(json.dumps(tuned))
        return Bad(_rescore_argv(w, w / "nbest-test.jsonl", "--params", str(p)), [f"{p}: {msg}"])


_params_case(
    "renamed-feature",
    {"weights.lm:bigram": "<drop>", "weights.lmscale": 0.3},
    'unknown feature "lmscale"',
)
_params_case("old-flat-form", {"lm_scale": 0.3}, "unknown key(s) 'lm_scale'")
_params_case(
    "old-lambda-beta-form",
    {"weights": {"lm_scale": 0.3, "word_bonus": 0.5}},
    "field 'weights' is in the old form {lm_scale, word_bonus}",
)
_params_case(
    "missing-feature",
    {"weights.num_words": "<drop>"},
    "field 'weights' of scorer 'bigram' must weight exactly am, lm:bigram, num_words, "
    "got am, lm:bigram",
)
_params_case("missing-grid", {"grid": "<drop>"}, "missing field 'grid'")
_params_case(
    "string-scale", {"weights.lm:bigram": "0.3"}, "field 'weights.lm:bigram' must be a number"
)
_params_case(
    "bool-bonus",
    {"weights.num_words": True},
    "field 'weights.num_words' must be a number, got true",
)
_params_case("unknown-scorer", {"scorer": "trigram"}, "field 'scorer' must be one of")
_params_case(
    "list-checkpoint", {"lm_checkpoint": ["a"]}, "field 'lm_checkpoint' must be a non-empty string"
)


@case("params-invalid-json", "rescore-nbest")
def _(w):
    p = w / "params.json"
    p.write_text('{"scorer": "none",\n')
    return Bad(
        _rescore_argv(w, w / "nbest-test.jsonl", "--params", str(p)), [f"{p}:2: invalid JSON"]
    )


@case("params-tuned-json-tampered", "rescore-nbest")
def _(w):
    p = w / "rescore" / "lm" / "tuned.json"
    p.write_text(p.read_text().replace('"num_words": ', '"num_words": 1', 1))
    return Bad(
        _rescore_argv(w, w / "nbest-test.jsonl", "--params", str(p)),
        [f"{p}: the files of", "re-run tune-rescoring"],
    )


@case("params-tuned-json-without-manifest", "rescore-nbest")
def _(w):
    (w / "other").mkdir()
    p = Path(shutil.copy(w / "rescore" / "lm" / "tuned.json", w / "other"))
    return Bad(
        _rescore_argv(w, w / "nbest-test.jsonl", "--params", str(p)),
        [f"{p}: no set manifest", "re-run tune-rescoring"],
    )


# ---------------------------------------------------------------- options


def _option_case(prog: str, name: str, extra: list[str], msg: str):
    @case(f"{prog}-option-{name}", prog)
    def build(w: Path) -> Bad:
        if prog == "rescore-nbest":
            argv = _rescore_argv(w, w / "nbest-test.jsonl", "--scorer", "none", *extra)
        elif prog == "tune-rescoring":
            argv = [
                "--nbest",
                str(w / "nbest-dev.jsonl"),
                "--out-dir",
                str(w / "out"),
                *bigram(w),
                *extra,
            ]
        else:
            argv = _score_argv(w, w / "rescore" / "lm" / "onebest-test.jsonl.gz") + extra
        return Bad(argv, [msg])


_option_case("rescore-nbest", "max-hyps-0", ["--max-hyps", "0"], "--max-hyps must be >= 1")
_option_case("rescore-nbest", "batch-size-0", ["--batch-size", "0"], "--batch-size must be >= 1")
_option_case("rescore-nbest", "set-name-path", ["--set-name", "../x"], "--set-name '../x'")
_option_case(
    "rescore-nbest", "lm-scale-nan", ["--lm-scale", "nan"], "--lm-scale must be a finite number"
)
_option_case(
    "rescore-nbest", "select", ["--select", "best"], "--select must be 'total' or 'oracle'"
)
_option_case("rescore-nbest", "scorer", ["--scorer", "trigram"], "unknown scorer 'trigram'")
_option_case(
    "tune-rescoring",
    "step-1e-7",
    ["--lm-scale-step", "1e-7"],
    "--lm-scale-step must be at least 1e-06",
)
_option_case(
    "tune-rescoring", "step-0", ["--word-bonus-step", "0"], "--word-bonus-step must be at least"
)
_option_case(
    "tune-rescoring",
    "min-gt-max",
    ["--lm-scale-min", "2", "--lm-scale-max", "1"],
    "--lm-scale-min (2) must not be greater",
)
_option_case(
    "tune-rescoring",
    "grid-too-big",
    ["--lm-scale-step", "1e-5"],
    "more than --max-grid-points 100,000",
)
_option_case("tune-rescoring", "scorer", ["--scorer", "trigram"], "unknown scorer 'trigram'")
_option_case("score-wer", "system-slash", ["--system", "a/b"], "--system 'a/b'")
_option_case(
    "score-wer", "bootstrap-0", ["--bootstrap-samples", "0"], "--bootstrap-samples must be >= 1"
)


@case("tune-nbest-field", "tune-rescoring")
def _(w):
    rec = {"id": "d1", "ref": "a", "hyps": [{"words": ["a"], "am_score": -1}]}
    p = write_lines(w / "nb.jsonl", [rec])
    return Bad(
        ["--nbest", str(p), "--out-dir", str(w / "out"), *bigram(w)],
        [f"{p}:1 (d1): field 'hyps[0].words' must be a string"],
    )


# ---------------------------------------------------------------- output folders


def _entry_argv(prog: str, w: Path, out: Path) -> list[str]:
    if prog == "rescore-nbest":
        return ["--nbest", str(w / "nbest-test.jsonl"), "--scorer", "none", "--out-dir", str(out)]
    if prog == "tune-rescoring":
        return ["--nbest", str(w / "nbest-dev.jsonl"), "--out-dir", str(out), *bigram(w)]
    if prog == "score-wer":
        argv = _score_argv(w, w / "rescore" / "lm" / "onebest-test.jsonl.gz")
        argv[argv.index("--out-dir") + 1] = str(out)
        return argv
    if prog == "rescore-systems":
        return _systems_argv(w, "--out-dir", str(out))
    return _report_argv(w)[:-2] + ["--out", str(out / "RESULTS.md")]


def _folder_cases(prog: str):
    @case(f"{prog}-read-only-out-dir", prog)
    def readonly(w: Path) -> Bad:
        out = w / "ro"
        out.mkdir()
        return Bad(
            _entry_argv(prog, w, out), [f"{out}: cannot write to the output folder"], readonly=out
        )

    @case(f"{prog}-out-dir-is-a-file", prog)
    def is_file(w: Path) -> Bad:
        out = w / "afile"
        out.write_text("x")
        return Bad(
            _entry_argv(prog, w, out / "sub"), [f"{out / 'sub'}: cannot write to the output folder"]
        )

    if prog != "make-report":

        @case(f"{prog}-concurrent-run", prog)
        def concurrent(w: Path) -> Bad:
            out = w / "busy"
            return Bad(
                _entry_argv(prog, w, out),
                [f"{out}: output folder is in use by another process (pid {os.getpid()})"],
                lock=out,
            )


for _prog in MAINS:
    _folder_cases(_prog)


# ---------------------------------------------------------------- score-wer


def _onebest(w: Path, rows: list) -> Path:
    return write_lines(w / "rescore" / "lm" / "hyps.jsonl", rows)


ROW1 = {"id": "t1", "hyp": "play hey jude now", "intent": "PlayMusic", "slots": ["O"] * 4}
ROW2 = {"id": "t2", "hyp": "weather in boston", "intent": "GetWeather", "slots": ["O"] * 3}


def _hyps_case(name: str, rows: list, expect: Callable[[Path], str]):
    @case(f"score-{name}", "score-wer")
    def build(w: Path) -> Bad:
        p = _onebest(w, rows)
        return Bad(_score_argv(w, p), [expect(p)])


_hyps_case(
    "duplicate-id",
    [ROW1, ROW2, ROW1],
    lambda p: f"{p}:3: duplicate utterance id 't1' (first at line 1)",
)
_hyps_case("missing-id", [ROW1], lambda p: f"{p}: no hypothesis for 1 utterance(s)")
_hyps_case(
    "extra-id",
    [ROW1, ROW2, {**ROW2, "id": "t9"}],
    lambda p: "no gold supervision for 1 utterance(s) of " + str(p),
)
_hyps_case(
    "hyp-null",
    [{**ROW1, "hyp": None}, ROW2],
    lambda p: f"{p}:1 (t1): field 'hyp' must be a string, got null",
)
_hyps_case(
    "intent-without-slots",
    [{k: v for k, v in ROW1.items() if k != "slots"}, ROW2],
    lambda p: f"{p}:1 (t1): missing field 'slots'",
)
_hyps_case(
    "slot-count",
    [ROW1, {**ROW2, "slots": ["O"]}],
    lambda p: f"{p}:2 (t2): 3 words but 1 predicted slot tags",
)
_hyps_case(
    "intent-list",
    [{**ROW1, "intent": ["PlayMusic"]}, ROW2],
    lambda p: f"{p}:1 (t1): field 'intent' must be a string",
)


@case("score-text-duplicate-id", "score-wer")
def _(w):
    p = w / "rescore" / "lm" / "hyps.txt"
    p.write_text("t1 play\nt2 weather\nt1 play hey\n")
    return Bad(_score_argv(w, p), [f"{p}:3: duplicate utterance id 't1' (first at line 1)"])


def _gold_case(name: str, record: dict, msg: str):
    @case(f"score-gold-{name}", "score-wer")
    def build(w: Path) -> Bad:
        gold = write_lines(
            w / "gold.jsonl", [record, gold_record("t2", "weather in boston", "GetWeather", None)]
        )
        return Bad(_score_argv(w, _onebest(w, [ROW1, ROW2]), gold=gold), [f"{gold}:1 (t1): {msg}"])


_gold_case(
    "text-null",
    {**gold_record("t1", "a", "X", None), "text": None},
    "field 'text' must be a string, got null",
)
_gold_case(
    "slots-length",
    gold_record("t1", "play hey jude now", "X", ["O"]),
    "field 'custom.slots' has 1 tags for 4 words",
)
_gold_case(
    "slots-not-strings",
    gold_record("t1", "play", "X", [1]),
    "field 'custom.slots' must be a list of strings",
)
_gold_case(
    "custom-string",
    {**gold_record("t1", "a", None, None), "custom": "PlayMusic"},
    "field 'custom' must be an object",
)


@case("score-gold-duplicate-id", "score-wer")
def _(w):
    gold = write_lines(
        w / "gold.jsonl", [gold_record("t1", "a", None, None), gold_record("t1", "b", None, None)]
    )
    return Bad(
        _score_argv(w, _onebest(w, [ROW1, ROW2]), gold=gold),
        [f"{gold}:2: duplicate utterance id 't1' (first at line 1)"],
    )


@case("score-gold-latin1", "score-wer")
def _(w):
    gold = w / "gold.jsonl"
    gold.write_bytes(
        json.dumps(gold_record("t1", "café", None, None), ensure_ascii=False).encode("latin-1")
    )
    return Bad(_score_argv(w, _onebest(w, [ROW1]), gold=gold), [f"{gold}:1: not UTF-8"])


@case("score-word-counts-bad-line", "score-wer")
def _(w):
    (w / "counts.txt").write_text("play 9\nhey nine\n")
    return Bad(
        _score_argv(w, w / "rescore" / "lm" / "onebest-test.jsonl.gz"),
        [f"{w / 'counts.txt'}:2: expected 'word count'"],
    )


@case("score-word-counts-latin1", "score-wer")
def _(w):
    (w / "counts.txt").write_bytes("café 9\n".encode("latin-1"))
    return Bad(
        _score_argv(w, w / "rescore" / "lm" / "onebest-test.jsonl.gz"),
        [f"{w / 'counts.txt'}:", "not UTF-8"],
    )


@case("score-onebest-of-two-runs", "score-wer")
def _(w):
    lm = w / "rescore" / "lm"
    shutil.copy(
        w / "rescore" / "rnnt_1best" / "rescored-test.jsonl.gz", lm / "rescored-test.jsonl.gz"
    )
    return Bad(
        _score_argv(w, lm / "onebest-test.jsonl.gz"),
        [
            f"{lm / 'onebest-test.jsonl.gz'}: the files of",
            "written by different runs",
            "re-run rescore-nbest",
        ],
    )


@case("score-onebest-set-incomplete", "score-wer")
def _(w):
    lm = w / "rescore" / "lm"
    (lm / "rescore-test.json").unlink()
    return Bad(
        _score_argv(w, lm / "onebest-test.jsonl.gz"),
        [f"{lm / 'onebest-test.jsonl.gz'}: incomplete output set: rescore-test.json"],
    )


@case("score-onebest-without-manifest", "score-wer")
def _(w):
    lm = w / "rescore" / "lm"
    (lm / "set-rescore-test.json").unlink()
    return Bad(
        _score_argv(w, lm / "onebest-test.jsonl.gz"),
        [f"{lm / 'onebest-test.jsonl.gz'}: no set manifest", "re-run rescore-nbest"],
    )


@case("score-corrupt-manifest", "score-wer")
def _(w):
    m = w / "rescore" / "lm" / "set-rescore-test.json"
    m.write_text("{")
    return Bad(
        _score_argv(w, w / "rescore" / "lm" / "onebest-test.jsonl.gz"),
        [f"{m}: corrupt set manifest"],
    )


# ---------------------------------------------------------------- make-report


@case("report-metrics-tampered", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "metrics-test.json"
    p.write_text(p.read_text() + " ")
    return Bad(_report_argv(w), [f"{p}: the files of", "re-run score-wer"])


@case("report-metrics-without-manifest", "make-report")
def _(w):
    (w / "rescore" / "lm" / "set-score-test-lm.json").unlink()
    p = w / "rescore" / "lm" / "metrics-test.json"
    return Bad(_report_argv(w), [f"{p}: no set manifest", "re-run score-wer"])


@case("report-metrics-mistyped", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "metrics-test.json"
    m = json.loads(p.read_text())
    m["wer"] = "12.5"
    p.write_text(json.dumps(m))
    _rehash(p.parent, p.name)
    return Bad(_report_argv(w), [f"{p}: field 'wer' must be a number"])


@case("report-tuned-tampered", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "tuned.json"
    p.write_text(p.read_text().replace('"num_words":', '"numwords":'))
    return Bad(_report_argv(w), [f"{p}: the files of", "re-run tune-rescoring"])


@case("report-tuned-renamed-key-vouched", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "tuned.json"
    p.write_text(p.read_text().replace('"num_words":', '"numwords":'))
    _rehash(p.parent, p.name)
    return Bad(_report_argv(w), [f'{p}: unknown feature "numwords"'])


@case("report-sweep-malformed", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "sweep-dev.tsv"
    p.write_text(p.read_text() + "0.5\tx\t3\n")
    _rehash(p.parent, p.name)
    n = len(p.read_text().splitlines())
    return Bad(_report_argv(w), [f"{p}:{n}: expected 'lm_scale<TAB>word_bonus<TAB>dev_wer'"])


@case("report-per-utt-different-utterances", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "per-utt-test.jsonl.gz"
    lines = gzip.decompress(p.read_bytes()).decode().splitlines(keepends=True)
    p.write_bytes(gzip.compress("".join(lines[:-1]).encode()))
    _rehash(p.parent, p.name)
    return Bad(
        _report_argv(w),
        [
            str(w / "rescore" / "rnnt_1best" / "per-utt-test.jsonl.gz"),
            str(p),
            "scored on different utterances",
        ],
    )


@case("report-per-utt-mistyped", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "per-utt-test.jsonl.gz"
    rows = [json.loads(x) for x in gzip.decompress(p.read_bytes()).decode().splitlines()]
    rows[0]["errors"] = "2"
    p.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    _rehash(p.parent, p.name)
    return Bad(_report_argv(w), [f"{p}:1 (t1): field 'errors' must be an integer >= 0"])


@case("report-cmd-latin1", "make-report")
def _(w):
    p = w / "rescore" / "lm" / "cmd.sh"
    p.write_bytes("tune-rescoring --out-dir café\n".encode("latin-1"))
    return Bad(_report_argv(w), [f"{p}:1: not UTF-8"])


@case("report-config-invalid-json", "make-report")
def _(w):
    p = w / "config.json"
    p.write_text('{"model": \n')
    return Bad(_report_argv(w, "--config-files", str(p)), [f"{p}:2: invalid JSON"])


@case("report-extra-md-utf16", "make-report")
def _(w):
    p = w / "extra.md"
    p.write_bytes("## Stage times\n".encode("utf-16"))
    return Bad(_report_argv(w, "--extra-md", str(p)), [f"{p}:1: not UTF-8"])


@case("report-missing-rescore-dir", "make-report")
def _(w):
    return Bad(
        ["--systems", str(w / "systems.toml"), "--rescore-dir", str(w / "nope")]
        + ["--out", str(w / "R.md")],
        [f"{w / 'nope'}: no such folder"],
    )


@case("report-no-matrix", "make-report")
def _(w):
    return Bad(_report_argv(w)[2:], ["--systems is required"])


@case("report-matrix-unknown-key", "make-report")
def _(w):
    p = w / "systems.toml"
    p.write_text(p.read_text().replace('label = "+ LM"', 'lable = "+ LM"'))
    return Bad(_report_argv(w), [f"{p}: [systems.lm]: unknown key(s) lable"])


@case("report-parallel-without-done-dir", "make-report")
def _(w):
    return Bad(_report_argv(w, "--parallel", "6-8", "9-13"), ["add --done-dir"])


@case("report-done-dir-missing", "make-report")
def _(w):
    return Bad(_report_argv(w, "--done-dir", str(w / "nope")), [f"{w / 'nope'}: --done-dir"])


@case("report-parallel-malformed", "make-report")
def _(w):
    (w / "done").mkdir()
    return Bad(_report_argv(w, "--done-dir", str(w / "done"), "--parallel", "6to8"), ["6to8"])


# ---------------------------------------------------------------- rescore-systems


@case("systems-no-nbest-dir", "rescore-systems")
def _(w):
    return Bad(_systems_argv(w, drop="--nbest-dir"), ["--nbest-dir is required"])


@case("systems-no-gold", "rescore-systems")
def _(w):
    return Bad(_systems_argv(w, drop="--gold"), ["--gold is required"])


@case("systems-gold-without-set", "rescore-systems")
def _(w):
    g = str(w / "gold-dev.jsonl")
    return Bad(_systems_argv(w, "--gold", g), [f"--gold {g!r}: needs {{set}} in it"])


@case("systems-missing-nbest", "rescore-systems")
def _(w):
    p = w / "dec" / "nbest-test.jsonl.gz"
    p.unlink()
    return Bad(_systems_argv(w), [f"{p}: not found (set 'test' of", "--nbest-dir"])


@case("systems-missing-gold", "rescore-systems")
def _(w):
    (w / "gold-test.jsonl").unlink()
    return Bad(_systems_argv(w), [f"{w / 'gold-test.jsonl'}: not found (set 'test' of"])


@case("systems-missing-checkpoint", "rescore-systems")
def _(w):
    m = w / "systems.toml"
    m.write_text(MATRIX.replace("LM_CHECKPOINT", str(w / "none.pt")))
    return Bad(_systems_argv(w), [f"{w / 'none.pt'}: not found ({m}: [systems.lm] lm_checkpoint)"])


@case("systems-missing-matrix", "rescore-systems")
def _(w):
    m = w / "nope.toml"
    return Bad(_systems_argv(w, "--systems", str(m)), [f"{m}: no such file"])


@case("systems-matrix-tuned-oracle", "rescore-systems")
def _(w):
    m = w / "systems.toml"
    m.write_text(m.read_text().replace('label = "+ LM"', 'label = "+ LM"\nselect = "oracle"'))
    return Bad(_systems_argv(w), [f"{m}: [systems.lm]: a system with an lm_checkpoint is tuned"])


@case("systems-bad-grid", "rescore-systems")
def _(w):
    return Bad(_systems_argv(w, "--lm-scale-step", "0"), ["--lm-scale-step must be at least"])


@case("systems-grid-too-large", "rescore-systems")
def _(w):
    return Bad(
        _systems_argv(w, "--lm-scale-step", "0.0001", "--max-grid-points", "100"),
        ["more than --max-grid-points 100"],
    )


@case("systems-negative-threshold", "rescore-systems")
def _(w):
    return Bad(_systems_argv(w, "--threshold", "-1"), ["--threshold must be >= 0"])


@case("systems-bad-checkpoint", "rescore-systems")
def _(w):
    m = w / "systems.toml"
    m.write_text(MATRIX.replace("LM_CHECKPOINT", str(w / "ckpt" / "empty.pt")))
    return Bad(_systems_argv(w), [str(w / "ckpt" / "empty.pt")])


# ---------------------------------------------------------------- the sweep


@contextlib.contextmanager
def _read_only(folder: Path | None, monkeypatch):
    """``chmod 555``; as root (which ignores it) also refuse creating files there (EACCES)."""
    if folder is None:
        yield
        return
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real_open = os.open

        def refuse(path, flags, *args, **kwargs):
            if flags & os.O_CREAT and Path(os.fspath(path)).parent == folder:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    try:
        yield
    finally:
        monkeypatch.undo()
        folder.chmod(0o755)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clear_line(name, base, tmp_path, capsys, monkeypatch):
    prog, build = CASES[name]
    w = tmp_path / "w"
    shutil.copytree(base, w, symlinks=True)
    bad = build(w)
    capsys.readouterr()
    lock = dir_lock(bad.lock, "output folder") if bad.lock else contextlib.nullcontext()
    with lock, _read_only(bad.readonly, monkeypatch), pytest.raises(SystemExit) as e:
        MAINS[prog](bad.argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0] == err.rstrip("\n").splitlines()[-1], err
    line = errors[0]
    assert line.startswith(f"{prog}: error: "), line
    for fragment in bad.expect:
        assert fragment in line, (fragment, line)
    assert not list(w.rglob(".staging-*")), "a staging folder was left behind"


def test_sweep_is_broad():
    progs = [prog for prog, _ in CASES.values()]
    assert len(CASES) >= 100 and all(progs.count(p) >= 8 for p in MAINS), len(CASES)
