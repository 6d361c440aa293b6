"""tune-context: the biasing bonus chosen on the tune set only, every set decoded with it."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from asr import tune_context
from tests.asr.faults import assert_user_error, run_main
from tests.asr.test_biasing import setup  # noqa: F401  (module fixture: checkpoint + lexicons)


@pytest.fixture()
def sets(setup, tmp_path):  # noqa: F811
    """The fixture cuts under two set names (dev, test)."""
    out = {}
    for name in ("dev", "test"):
        out[name] = tmp_path / f"fix_{name}.jsonl.gz"
        shutil.copy(setup["cuts"], out[name])
    return out


def _args(s, sets, out: Path, *extra: str) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--checkpoint",
        str(s["ckpt"]),
        "--bpe-model",
        str(s["bpe_model"]),
        "--cuts",
        str(sets["dev"]),
        str(sets["test"]),
        "--max-utts",
        "4",
        "--lattices",
        "false",
        "--out-dir",
        str(out),
        *extra,
    ]


def _nbest(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_score_chosen_on_the_tune_set_and_every_set_decoded_with_it(setup, sets, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "biased"
    lex = str(setup["lex"] / "global.txt")
    argv = _args(setup, sets, out, "--context-lexicon", lex, "--scores", "0", "3", "0.5")
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    tuned = json.loads((out / "context-tuned.json").read_text())
    grid = tuned["grid"]
    assert [g["score"] for g in grid] == [0.0, 3.0, 0.5]
    best = min(grid, key=lambda g: (g["wer"], g["score"]))
    assert tuned["chosen_score"] == best["score"] and tuned["tune_set"] == "dev"
    chosen = f"ctx{best['score']:g}"
    # the tune set's final decode is the grid point's; the test set was decoded only once
    point = _nbest(out / "tune" / chosen / "nbest-dev.jsonl.gz")
    assert _nbest(out / "nbest-dev.jsonl.gz") == point
    # copied, not decoded again: every output file of the grid point, byte for byte
    for src in (out / "tune" / chosen).iterdir():
        if src.name != "point.json":
            assert (out / src.name).read_bytes() == src.read_bytes(), src.name
    assert (out / "nbest-test.jsonl.gz").is_file()
    assert not list((out / "tune").glob("*/nbest-test*"))
    assert tuned["sets"]["dev"]["wer"] == best["wer"]
    # a re-run reuses every grid point (same checkpoint and options)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "tune").glob("*/nbest-dev.jsonl.gz")}
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    assert err.count("reusing") == 3
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # other decode options: the grid points are decoded again
    code, err = run_main(tune_context.main, [*argv, "--beam", "2"], capsys)
    assert code == 0, err
    assert "reusing" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "needs --context-lexicon"),
        (["--context-lexicon", "LEX", "--context-score", "1"], "--scores"),
        (["--context-lexicon", "LEX", "--scores", "-1"], "non-negative"),
        (["--context-lexicon", "LEX", "--tune-set", "valid"], "--tune-set 'valid'"),
    ],
)
def test_option_errors(setup, sets, tmp_path, capsys, extra, message):  # noqa: F811
    extra = [str(setup["lex"]) if a == "LEX" else a for a in extra]
    code, err = run_main(tune_context.main, _args(setup, sets, tmp_path / "o", *extra), capsys)
    assert_user_error(code, err, "tune-context", message)
    assert not (tmp_path / "o" / "context-tuned.json").exists()
