"""tuned.json is typed and its paths are relative to itself (item 4); the grid is validated and
capped before it is allocated (item 5); broken checkpoints are CheckpointErrors (item 6)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from common.io import CheckpointError, InputError
from rescoring import rescore, tune
from rescoring.params import Weights, read_tuned
from rescoring.scorers import build_scorer, score_nbest
from tests.rescoring.conftest import bigram


def _error(capsys, fn, argv) -> str:
    with pytest.raises(SystemExit) as e:
        fn(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if ": error: " in x]
    return line


DROP = object()
GRID = {
    "lm_scale_min": 0.0,
    "lm_scale_max": 1.5,
    "lm_scale_step": 0.05,
    "word_bonus_min": 0.0,
    "word_bonus_max": 0.0,
    "word_bonus_step": 0.25,
    "points": 31,
}
GOOD = {
    "weights": {"am": 1.0, "lm:bigram": 0.5, "num_words": 0.0},
    "scorer": "bigram",
    "lm_checkpoint": "lm.txt",
    "nlu_checkpoint": None,
    "tuned_on": "nbest-dev.jsonl",
    "set": "dev",
    "wer": 10.0,
    "wer_first_pass": 12.0,
    "grid": GRID,
}


def _changed(change: dict) -> dict:
    """GOOD with ``change`` applied; a key ``a.b`` changes field b of object a, DROP removes."""
    out = json.loads(json.dumps(GOOD))
    for key, v in change.items():
        *parents, last = key.split(".")
        obj = out
        for k in parents:
            obj = obj[k]
        if v is DROP:
            del obj[last]
        else:
            obj[last] = v
    return out


@pytest.mark.parametrize(
    "change, msg",
    [
        (
            {"weights.lmscale": 0.5, "weights.lm:bigram": DROP},
            'unknown feature "lmscale"',
        ),
        ({"lmscale": 0.5}, "unknown key(s) 'lmscale'; a tuned.json has exactly weights, scorer"),
        ({"lm_scale": 0.5, "weights": DROP}, "unknown key(s) 'lm_scale'"),  # the old flat form
        ({"weights": {"lm_scale": 0.5, "word_bonus": 0.0}}, "weights' is in the old form"),
        ({"weights": DROP}, "missing field 'weights'"),
        (
            {"weights.lm:bigram": DROP},
            "field 'weights' of scorer 'bigram' must weight exactly am, lm:bigram, num_words, "
            "got am, num_words",
        ),
        ({"weights.lm:nlm": 0.5}, "must weight exactly am, lm:bigram, num_words, got am, lm:big"),
        ({"weights.intent_conf": 0.5}, "must weight exactly am, lm:bigram, num_words, got am, lm"),
        ({"weights.am": DROP}, "missing feature 'am' (its weight is fixed at 1)"),
        ({"weights.am": 2.0}, "the weight of 'am' is fixed at 1, got 2.0"),
        ({"weights": [0.5, 0.0]}, "the weights must be an object"),
        ({"weights.lm:bigram": "0.5"}, "field 'weights.lm:bigram' must be a number, got \"0.5\""),
        ({"weights.num_words": True}, "field 'weights.num_words' must be a number, got true"),
        ({"weights.lm:bigram": float("inf")}, "field 'weights.lm:bigram' must be a finite number"),
        ({"scorer": "trigram"}, "field 'scorer' must be one of"),
        ({"lm_checkpoint": 3}, "field 'lm_checkpoint' must be a non-empty string"),
        ({"tuned_on": None}, "field 'tuned_on' must be a non-empty string, got null"),
        ({"set": ""}, "field 'set' must be a non-empty string"),
        ({"wer": DROP}, "missing field 'wer'"),
        ({"grid": DROP}, "missing field 'grid'"),
        ({"grid.points": 0}, "field 'grid.points' must be an integer >= 1"),
        ({"grid.lm_scale_step": DROP}, "missing field 'grid.lm_scale_step'"),
        ({"grid.steps": 3}, "unknown key(s) 'steps' in 'grid'"),
    ],
)
def test_bad_params_file(tiny, capsys, change, msg):
    params = _changed(change)
    p = tiny / "params.json"  # not an output name of ours: read without a set manifest
    p.write_text(json.dumps(params))
    line = _error(
        capsys,
        rescore.main,
        [
            "--nbest",
            str(tiny / "nbest-test.jsonl"),
            "--params",
            str(p),
            "--out-dir",
            str(tiny / "out"),
        ],
    )
    assert line.startswith(f"rescore-nbest: error: {p}: ") and msg in line


def test_params_file_resolves_paths_against_itself(tiny, monkeypatch):
    (tiny / "params").mkdir()
    p = tiny / "params" / "p.json"
    p.write_text(json.dumps({**GOOD, "lm_checkpoint": "../lm.txt", "tuned_on": "../x"}))
    monkeypatch.chdir("/")
    t = read_tuned(p)
    assert t.lm_checkpoint == (tiny / "lm.txt").resolve()
    assert t.weights == Weights.lm_bonus("lm:bigram", lm_scale=0.5, word_bonus=0.0)
    assert t.grid.points == 31 and t.set == "dev"
    p.write_text('{\n  "scorer": \n')
    with pytest.raises(InputError, match=r"p\.json:3: invalid JSON"):
        read_tuned(p)


def test_tuned_json_works_from_another_folder(tiny, monkeypatch):
    """The defect: ``rescore-nbest --params tuned.json`` died on a cwd-relative checkpoint path."""
    monkeypatch.chdir(tiny)
    tune.main(
        [
            "--nbest",
            "nbest-dev.jsonl",
            "--out-dir",
            "exp/rescore/lm",
            "--scorer",
            "bigram",
            "--lm-checkpoint",
            "lm.txt",
        ]
    )
    raw = json.loads((tiny / "exp/rescore/lm/tuned.json").read_text())
    assert (
        raw["lm_checkpoint"] == "../../../lm.txt" and raw["tuned_on"] == "../../../nbest-dev.jsonl"
    )
    assert raw["weights"]["lm:bigram"] > 0
    elsewhere = tiny / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rescore.main(
        [
            "--nbest",
            str(tiny / "nbest-test.jsonl"),
            "--params",
            "../exp/rescore/lm/tuned.json",
            "--out-dir",
            "out",
            "--set-name",
            "test",
        ]
    )
    info = json.loads((elsewhere / "out" / "rescore-test.json").read_text())
    assert info["lm_scale"] == raw["weights"]["lm:bigram"] and info["scorer"] == "bigram"
    assert info["lm_checkpoint"] == str((tiny / "lm.txt").resolve())
    monkeypatch.chdir(tiny / "exp/rescore/lm")
    rescore.main(
        [
            "--nbest",
            str(tiny / "nbest-test.jsonl"),
            "--params",
            "tuned.json",
            "--out-dir",
            ".",
            "--set-name",
            "test",
        ]
    )


def _tune_argv(tiny, *extra):
    return [
        "--nbest",
        str(tiny / "nbest-dev.jsonl"),
        "--out-dir",
        str(tiny / "out"),
        *bigram(tiny),
        *extra,
    ]


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--lm-scale-step", "1e-7"], "--lm-scale-step must be at least 1e-06"),
        (
            ["--word-bonus-step", "0"],
            "--word-bonus-step must be at least 1e-06 (grid values are rounded to 6 decimals), got 0",
        ),
        (["--lm-scale-step", "-0.1"], "--lm-scale-step must be at least"),
        (["--lm-scale-min", "2", "--lm-scale-max", "1"], "--lm-scale-min (2) must not be greater"),
        (["--word-bonus-max", "nan"], "--word-bonus-max must be a finite number"),
        (
            ["--lm-scale-step", "1e-5"],
            "150,001 x 17 = 2,550,017 points, more than --max-grid-points 100,000",
        ),
        (["--max-grid-points", "0"], "--max-grid-points must be >= 1"),
        (["--lm-scale-step", "0.001", "--max-grid-points", "20000"], "1,501 x 17 = 25,517 points"),
    ],
)
def test_grid_is_validated_before_allocation(tiny, capsys, monkeypatch, extra, msg):
    def no_alloc(*a, **k):
        raise AssertionError("the grid was allocated")

    monkeypatch.setattr(tune.np, "arange", no_alloc)
    line = _error(capsys, tune.main, _tune_argv(tiny, *extra))
    assert line.startswith("tune-rescoring: error: ") and msg in line
    assert not (tiny / "out" / "tuned.json").exists()


def test_grid_cap_can_be_raised(tiny):
    tune.main(_tune_argv(tiny, "--lm-scale-step", "0.01", "--max-grid-points", "3000"))
    t = json.loads((tiny / "out" / "tuned.json").read_text())
    assert t["grid"]["points"] == 151 * 17 and t["grid"]["lm_scale_step"] == 0.01
    assert tune.grid(0, 1.5, 0.05).tolist() == pytest.approx(np.arange(31) * 0.05)


def _torch_files(d):
    """Checkpoints of every wrong kind -> a fragment of the expected message."""
    import dataclasses

    import torch

    from asr.config import ModelConfig as AsrModelConfig
    from lm.config import ModelConfig as LmModelConfig

    def save(name, obj):
        torch.save(obj, d / name)
        return d / name

    asr_cfg = json.loads(json.dumps(dataclasses.asdict(AsrModelConfig()), default=str))
    lm_cfg = dataclasses.asdict(LmModelConfig())
    full = save("full.pt", {"model": {"w": torch.zeros(64, 64)}, "config": {"model": lm_cfg}})
    (d / "truncated.pt").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(bytes(range(256)) * 8)
    (d / "folder.pt").mkdir()
    return {
        "missing": (d / "missing.pt", "checkpoint not found"),
        "directory": (d / "folder.pt", "checkpoint not found"),
        "empty": (d / "empty.pt", "cannot load checkpoint"),
        "random-bytes": (d / "random.pt", "cannot load checkpoint"),
        "truncated": (d / "truncated.pt", "cannot load checkpoint"),
        "tensor": (save("tensor.pt", torch.zeros(3)), "no 'model' entry"),
        "no-model": (save("nomodel.pt", {"weights": torch.zeros(3)}), "no 'model' entry"),
        "asr": (
            save("asr.pt", {"model": {"enc.w": torch.zeros(2)}, "config": {"model": asr_cfg}}),
            "LM checkpoint",
        ),
        "lm-bad-tokenizer": (
            save(
                "badtok.pt",
                {"model": {}, "config": {"model": lm_cfg}, "tokenizer": torch.zeros(8)},
            ),
            "",
        ),
        "lm-tokenizer-garbage": (
            save(
                "garbage.pt",
                {
                    "model": {},
                    "config": {"model": lm_cfg},
                    "tokenizer": torch.arange(64, dtype=torch.uint8),
                },
            ),
            "",
        ),
    }


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    return _torch_files(tmp_path_factory.mktemp("ckpt"))


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "empty",
        "random-bytes",
        "truncated",
        "tensor",
        "no-model",
        "asr",
        "lm-bad-tokenizer",
        "lm-tokenizer-garbage",
    ],
)
def test_wrong_checkpoints_are_checkpoint_errors(kind, bad_checkpoints):
    path, msg = bad_checkpoints[kind]
    with pytest.raises(CheckpointError) as e:
        build_scorer("nlm", path)
    assert str(e.value).startswith(f"{path}: ") and msg in str(e.value)


def test_lm_giving_nan_is_a_checkpoint_error(tiny, monkeypatch):
    from rescoring.nbest import load_nbest

    scorer = build_scorer("bigram", tiny / "lm.txt")
    monkeypatch.setattr(scorer, "score", lambda s: [math.nan] * len(s))
    with pytest.raises(CheckpointError, match=r"lm\.txt: the LM scored .* as nan"):
        score_nbest(load_nbest(tiny / "nbest-dev.jsonl"), scorer)


@pytest.mark.parametrize(
    "raised, msg",
    [
        (
            AttributeError("'list' object has no attribute 'items'"),
            "not a usable train-lm checkpoint",
        ),
        (
            CheckpointError("x.pt: cannot load checkpoint (UnpicklingError: a\nb\nc)"),
            "x.pt: cannot load",
        ),
    ],
)
def test_lm_loader_errors_become_one_line_checkpoint_errors(monkeypatch, tmp_path, raised, msg):
    """Whatever lm.scorer's loader lets through for a broken file is a one-line CheckpointError."""
    import lm.scorer

    def load(path, **kwargs):
        raise raised

    monkeypatch.setattr(lm.scorer.LMScorer, "from_checkpoint", load)
    with pytest.raises(CheckpointError) as e:
        build_scorer("nlm", tmp_path / "x.pt")
    assert msg in str(e.value) and "\n" not in str(e.value)
