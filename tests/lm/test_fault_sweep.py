"""Fault sweep of ``train-lm`` (lm/train.py ``main``): every bad input ends with exit status 2
and one line ``train-lm: error: ...`` naming the file (or option), never a traceback.

Checkpoints of every wrong kind (as ``--init-from`` and as the exp dir's ``epoch-N.pt``),
missing and empty data files, a read-only exp dir and an exp dir locked by another process.
Inputs are checked before training, so the module runs in seconds.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from lm.train import main
from tests.asr.faults import (
    BAD_CHECKPOINTS,
    assert_user_error,
    locked_by_other_process,
    read_only,
    run_main,
    write_bad_checkpoint,
)


def _argv(work: Path, exp: Path, mode: str = "pretrain", **over) -> list[str]:
    """``train-lm`` on the tiny preset with every input under ``work``; ``over`` replaces an
    option's value (``init_from=...``) or drops it (``None``)."""
    opts = {
        "mode": mode,
        "exp_dir": exp,
        "train_text": work / "data/lm/pretrain.txt",
        "nlu_train": work / "data/manifests/snips_nlu_train.jsonl.gz",
        "nlu_dev": work / "data/manifests/snips_nlu_dev.jsonl.gz",
        "intents": work / "data/manifests/snips_intents.txt",
        "slot_tags": work / "data/manifests/snips_slot_tags.txt",
        "bpe_model": work / "data/lang_lm/lm_bpe.model",
        "bpe_train_text": work / "data/lm/pretrain.txt",
        "bpe_vocab_size": 40,
        "epochs": 1,
    }
    opts.update(over)
    argv = ["--preset", "tiny"]
    for k, v in opts.items():
        if v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


@pytest.fixture(scope="module")
def files(lm_data, pretrained, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm_faults")
    empty_nlu = root / "empty.jsonl.gz"
    with gzip.open(empty_nlu, "wt"):
        pass
    (root / "empty.txt").write_text("")
    (root / "notes.txt").write_text("not a model\n")
    return {
        "pretrained": pretrained,
        "asr": write_bad_checkpoint("asr", root / "asr.pt"),
        "empty_nlu": empty_nlu,
        "empty_txt": root / "empty.txt",
        "text": root / "notes.txt",
    }


@pytest.mark.parametrize("kind", [*BAD_CHECKPOINTS, "asr"])
def test_init_from_wrong_checkpoint(kind, lm_data, files, tmp_path, capsys):
    bad = write_bad_checkpoint(kind, tmp_path / "init.pt", files["pretrained"])
    exp = tmp_path / "exp"
    argv = _argv(lm_data, exp, "finetune-multitask", init_from=bad)
    code, err = run_main(main, argv, capsys)
    line = assert_user_error(code, err, "train-lm", bad)
    if kind == "asr":
        assert "not an LM checkpoint" in line
    assert not list(exp.glob("*.pt"))


@pytest.mark.parametrize("kind", [*BAD_CHECKPOINTS[1:], "asr"])
def test_resume_from_wrong_checkpoint(kind, lm_data, files, tmp_path, capsys):
    exp = tmp_path / "exp"
    bad = write_bad_checkpoint(kind, exp / "epoch-1.pt", files["pretrained"])
    before = bad.read_bytes()
    code, err = run_main(main, _argv(lm_data, exp), capsys)
    assert_user_error(code, err, "train-lm", bad)
    assert bad.read_bytes() == before and not (exp / "best.pt").exists()


INPUT_CASES = {
    # case: (mode, option, value: a key of ``files`` or a new name, text in the error)
    "missing train text": ("pretrain", "train_text", "nope.txt", "no such file"),
    "empty train text": ("pretrain", "train_text", "empty_txt", "no sentences"),
    "missing nlu dev": ("pretrain", "nlu_dev", "nope.jsonl.gz", "no such file"),
    "empty nlu dev": ("pretrain", "nlu_dev", "empty_nlu", "no utterances"),
    "empty nlu train": ("multitask", "nlu_train", "empty_nlu", "no utterances"),
    "missing intents": ("multitask", "intents", "intents.txt", "no such file"),
    "empty slot tags": ("multitask", "slot_tags", "empty_txt", "empty label file"),
    "text as bpe model": ("pretrain", "bpe_model", "text", "not a sentencepiece model"),
    "missing bpe text": ("pretrain", "bpe_train_text", "nope.txt", "no such file"),
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_bad_input_file(case, lm_data, files, tmp_path, capsys):
    mode, option, value, message = INPUT_CASES[case]
    bad = files.get(value, tmp_path / value)
    over = {option: bad}
    if option == "bpe_train_text":  # only read when the sentencepiece model must be trained
        over["bpe_model"] = tmp_path / "new_bpe.model"
    exp = tmp_path / "exp"
    code, err = run_main(main, _argv(lm_data, exp, mode, **over), capsys)
    assert message in assert_user_error(code, err, "train-lm", bad)
    assert not list(exp.glob("*.pt"))


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--select-metric", "slot_f1"], "--select-metric slot_f1"),  # pretrain has no NLU heads
        (["--scheduler", "rmw"], "--scheduler"),
        (["--ramp-steps", "0"], "--ramp-steps"),
        (["--arch", "gru"], "--arch"),
        (["--mode", "pre-train"], "--mode"),
    ],
)
def test_bad_option_value(extra, option, lm_data, tmp_path, capsys):
    code, err = run_main(main, [*_argv(lm_data, tmp_path / "exp"), *extra], capsys)
    assert_user_error(code, err, "train-lm", option)


def test_read_only_exp_dir(lm_data, tmp_path, capsys):
    exp = tmp_path / "exp"
    with read_only(exp):
        code, err = run_main(main, _argv(lm_data, exp), capsys)
    assert_user_error(code, err, "train-lm", exp)


def test_exp_dir_locked_by_another_trainer(lm_data, tmp_path, capsys):
    exp = tmp_path / "exp"
    with locked_by_other_process(exp) as pid:
        code, err = run_main(main, _argv(lm_data, exp), capsys)
    assert "in use" in assert_user_error(code, err, "train-lm", exp, f"pid {pid}")
    assert not list(exp.glob("*.pt")) and not (exp / "config.json").exists()
