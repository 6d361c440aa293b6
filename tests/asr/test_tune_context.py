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


def test_score_chosen_on_the_tune_set_and_every_set_decoded_with_it(
    setup,  # noqa: F811
    sets,
    tmp_path,
    capsys,
    monkeypatch,
):
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
    # other decoding code (a changed source fingerprint): the grid points are decoded again
    monkeypatch.setattr(tune_context, "source_fingerprint", lambda *packages: "other code")
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    assert "reusing" not in err
    assert json.loads((out / "tune" / chosen / "point.json").read_text())["code"] == "other code"
    monkeypatch.undo()
    # other decode options: the grid points are decoded again
    code, err = run_main(tune_context.main, [*argv, "--beam", "2"], capsys)
    assert code == 0, err
    assert "reusing" not in err


def test_grid_points_decoded_again_when_the_checkpoint_or_lexicon_changes_in_place(
    setup,  # noqa: F811
    sets,
    tmp_path,
    capsys,
):
    """The recipe retrains avg.pt in place (same path) when its training budget grows: the
    grid points of the old model must not be reused (the 2d84205 re-run reused them: its dev
    biased numbers were the old model's)."""
    import torch

    from tests.asr.faults import write_asr_checkpoint

    ckpt = tmp_path / "avg.pt"
    shutil.copy(setup["ckpt"], ckpt)
    lex = tmp_path / "lex"
    shutil.copytree(setup["lex"], lex)
    out = tmp_path / "biased"
    argv = _args(setup, sets, out, "--context-lexicon", str(lex / "global.txt"), "--scores", "0.5")
    argv[argv.index(str(setup["ckpt"]))] = str(ckpt)
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    assert err.count("reusing") == 1
    before = json.loads((out / "tune" / "ctx0.5" / "point.json").read_text())
    torch.manual_seed(1234)
    write_asr_checkpoint(ckpt)  # other weights, same path
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    assert "reusing" not in err
    after = json.loads((out / "tune" / "ctx0.5" / "point.json").read_text())
    assert after["ckpt"] == before["ckpt"]
    assert after["inputs"]["ckpt_sha256"] != before["inputs"]["ckpt_sha256"]
    code, err = run_main(tune_context.main, argv, capsys)
    assert code == 0, err
    assert err.count("reusing") == 1
    (lex / "global.txt").write_text("play some jazz\n")  # a lexicon edited in place
    code, err = run_main(tune_context.main, argv, capsys)
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


@pytest.mark.parametrize(
    "wers, n",
    [
        ([50.0], 0),
        ([50.0, 48.0], 0),
        ([50.0, 48.0, 49.0], 1),
        ([50.0, 48.0, 49.0, 52.0], 2),
        ([50.0, 48.0, 49.0, 47.0], 0),
        ([50.0, 50.0], 0),  # a tie is not worse
    ],
)
def test_worse_in_a_row(wers, n):
    assert tune_context.worse_in_a_row(wers) == n


# dev WER of each score in the fake decodes below
_FAKE_WER = {0.0: 50.0, 0.25: 48.0, 0.5: 49.0, 0.75: 47.0, 1.0: 60.0}


@pytest.fixture()
def fake_decode(monkeypatch):
    """decode_set stand-in: the WER of _FAKE_WER by context score; records what was decoded."""
    calls = []

    def fake(model, tok, path, cfg, folder, cuts=None, biasing=None):
        calls.append((Path(path).name, cfg.context_score, biasing.bonus))
        Path(folder).mkdir(parents=True, exist_ok=True)
        name = "dev" if "dev" in Path(path).name else "test"
        return {
            "set": name,
            "wer": _FAKE_WER[cfg.context_score],
            "oracle_wer": 1.0,
            "decode_s": 0.0,
        }

    monkeypatch.setattr(tune_context, "decode_set", fake)
    return calls


@pytest.mark.parametrize(
    "patience, tried, chosen",
    [
        ("0", [0.0, 0.25, 0.5, 0.75, 1.0], 0.75),
        ("1", [0.0, 0.25, 0.5], 0.25),  # 0.5 is above 0.25's WER: stop
        ("2", [0.0, 0.25, 0.5, 0.75, 1.0], 0.75),  # 0.75 is a new best: go on
    ],
)
def test_patience_stops_the_grid(
    setup,  # noqa: F811
    sets,
    tmp_path,
    capsys,
    fake_decode,
    patience,
    tried,
    chosen,
):
    out = tmp_path / "biased"
    lex = str(setup["lex"] / "global.txt")
    grid = ["0", "0.25", "0.5", "0.75", "1"]
    argv = _args(setup, sets, out, "--context-lexicon", lex, "--scores", *grid)
    code, err = run_main(tune_context.main, [*argv, "--patience", patience], capsys)
    assert code == 0, err
    tuned = json.loads((out / "context-tuned.json").read_text())
    assert [g["score"] for g in tuned["grid"]] == tried
    assert tuned["not_tried"] == [float(s) for s in grid[len(tried) :]]
    assert tuned["chosen_score"] == chosen
    # the dev grid, then test once at the chosen score (dev is copied from its grid point)
    assert [c[1] for c in fake_decode] == [*tried, chosen]
    assert fake_decode[-1][0] == sets["test"].name and fake_decode[-1][2] == chosen


def test_score_from_another_run(setup, sets, tmp_path, capsys, fake_decode):  # noqa: F811
    src = tmp_path / "context-tuned.json"
    src.write_text(json.dumps({"chosen_score": 0.75, "grid": []}))
    out = tmp_path / "gold"
    lex = str(setup["lex"] / "global.txt")
    argv = _args(setup, sets, out, "--context-lexicon", lex, "--scores", "0", "1")
    code, err = run_main(tune_context.main, [*argv, "--score-from", str(src)], capsys)
    assert code == 0, err
    tuned = json.loads((out / "context-tuned.json").read_text())
    assert [g["score"] for g in tuned["grid"]] == [0.75]  # --scores ignored
    assert tuned["chosen_score"] == 0.75 and tuned["score_from"] == str(src)
    assert [c[1] for c in fake_decode] == [0.75, 0.75]  # dev once, test once


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not a context-tuned.json"),
        ('{"grid": []}', "not a context-tuned.json"),
        ('{"chosen_score": -1}', "is not a score >= 0"),
        ('{"chosen_score": "0.5"}', "is not a score >= 0"),
    ],
)
def test_score_from_errors(setup, sets, tmp_path, capsys, fake_decode, content, message):  # noqa: F811
    src = tmp_path / "context-tuned.json"
    if content is not None:
        src.write_text(content)
    lex = str(setup["lex"] / "global.txt")
    argv = _args(setup, sets, tmp_path / "o", "--context-lexicon", lex, "--score-from", str(src))
    code, err = run_main(tune_context.main, argv, capsys)
    assert_user_error(code, err, "tune-context", message)
    assert str(src) in err
    assert not (tmp_path / "o").exists() and not fake_decode


def test_patience_must_not_be_negative(setup, sets, tmp_path, capsys):  # noqa: F811
    lex = str(setup["lex"] / "global.txt")
    argv = _args(setup, sets, tmp_path / "o", "--context-lexicon", lex, "--patience", "-1")
    code, err = run_main(tune_context.main, argv, capsys)
    assert_user_error(code, err, "tune-context", "--patience must be >= 0")
