"""Fault sweep of the ASR entry points: every bad input ends with exit status 2 and one line
``<prog>: error: ...`` naming the file (or option), never a traceback.

Each case calls ``main(argv)`` in-process: ``train-asr`` (asr/train.py), ``average-checkpoints``
(asr/average.py) and ``decode-asr`` (asr/decode.py), with checkpoints of every wrong kind,
missing / empty / foreign inputs, read-only output folders and a folder locked by another
process. Inputs are checked before any training or decoding, so the module runs in seconds.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from asr import average, decode, train
from tests.asr.faults import (
    BAD_CHECKPOINTS,
    assert_user_error,
    locked_by_other_process,
    read_only,
    run_main,
    write_bad_checkpoint,
)


@pytest.fixture(scope="module")
def good(asr_data, tmp_path_factory) -> dict[str, Path]:
    """A tiny RNN-T trained 2 epochs through ``train-asr``'s main, plus foreign inputs."""
    root = tmp_path_factory.mktemp("fault_sweep")
    exp = root / "exp"
    argv = [*_train_args(asr_data, exp), "--num-epochs", "2", "--max-steps", "0"]
    train.main(argv)
    assert (exp / "epoch-2.pt").is_file()
    empty = root / "empty.jsonl.gz"
    with gzip.open(empty, "wt"):
        pass
    text = root / "notes.txt"
    text.write_text("not a manifest\n")
    return {
        "exp": exp,
        "ckpt": exp / "epoch-2.pt",
        "cuts": asr_data["cuts"],
        "bpe": asr_data["bpe_model"],
        "sups": asr_data["dir"] / "sups.jsonl.gz",
        "empty": empty,
        "text": text,
    }


def _train_args(asr_data, exp: Path, **paths: Path) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--exp-dir",
        str(exp),
        "--train-cuts",
        str(paths.get("train_cuts", asr_data["cuts"])),
        "--dev-cuts",
        str(paths.get("dev_cuts", asr_data["cuts"])),
        "--bpe-model",
        str(paths.get("bpe_model", asr_data["bpe_model"])),
        "--max-steps",
        "1",
    ]


# ---------------------------------------------------------------------------------------------
# train-asr

TRAIN_INPUT_CASES = {
    # case: (option replaced, fixture key or new file name, text expected in the error)
    "missing train cuts": ("train_cuts", "nope.jsonl.gz", "CutSet not found"),
    "empty train cuts": ("train_cuts", "empty", "holds no cuts"),
    "supervisions as train cuts": ("train_cuts", "sups", "not a CutSet"),
    "text as train cuts": ("train_cuts", "text", "cannot read as a Lhotse CutSet"),
    "empty dev cuts": ("dev_cuts", "empty", "holds no cuts"),
    "missing bpe model": ("bpe_model", "nope.model", "BPE model not found"),
    "text as bpe model": ("bpe_model", "text", "not a sentencepiece model"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_INPUT_CASES))
def test_train_asr_bad_input_file(case, good, asr_data, tmp_path, capsys):
    option, what, message = TRAIN_INPUT_CASES[case]
    bad = good.get(what, tmp_path / what)
    argv = _train_args(asr_data, tmp_path / "exp", **{option: bad})
    code, err = run_main(train.main, argv, capsys)
    assert message in assert_user_error(code, err, "train-asr", bad)
    assert not list((tmp_path / "exp").glob("epoch-*.pt"))


@pytest.mark.parametrize("kind", [*BAD_CHECKPOINTS[1:], "lm"])
def test_train_asr_resume_from_wrong_checkpoint(kind, good, asr_data, tmp_path, capsys):
    exp = tmp_path / "exp"
    bad = write_bad_checkpoint(kind, exp / "epoch-1.pt", good["ckpt"])
    before = bad.read_bytes()
    code, err = run_main(train.main, _train_args(asr_data, exp), capsys)
    assert_user_error(code, err, "train-asr", bad)
    assert bad.read_bytes() == before  # the user's file is left alone


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--vocab-size", "41"], "--vocab-size 41"),  # the BPE model has 40 pieces
        (["--feature-dim", "40"], "--feature-dim"),  # the cuts have 80-dim fbank
        (["--loss-impl", "k2"], "--loss-impl"),
        (["--num-epochs", "0"], "--num-epochs"),
        (["--max-steps", "-1"], "--max-steps"),
    ],
)
def test_train_asr_bad_option_value(argv, option, asr_data, tmp_path, capsys):
    code, err = run_main(train.main, [*_train_args(asr_data, tmp_path / "exp"), *argv], capsys)
    assert_user_error(code, err, "train-asr", option)


def test_train_asr_vocab_size_mismatch_names_the_bpe_model(asr_data, tmp_path, capsys):
    argv = [*_train_args(asr_data, tmp_path / "exp"), "--vocab-size", "128"]
    code, err = run_main(train.main, argv, capsys)
    line = assert_user_error(code, err, "train-asr", asr_data["bpe_model"], "40 pieces")
    assert "128" in line


def test_train_asr_read_only_exp_dir(asr_data, tmp_path, capsys):
    exp = tmp_path / "exp"
    with read_only(exp):
        code, err = run_main(train.main, _train_args(asr_data, exp), capsys)
    assert_user_error(code, err, "train-asr", exp)


def test_train_asr_exp_dir_locked_by_another_trainer(asr_data, tmp_path, capsys):
    exp = tmp_path / "exp"
    with locked_by_other_process(exp) as pid:
        code, err = run_main(train.main, _train_args(asr_data, exp), capsys)
    assert "in use" in assert_user_error(code, err, "train-asr", exp, f"pid {pid}")
    assert not list(exp.glob("epoch-*.pt")) and not (exp / "log").exists()


# ---------------------------------------------------------------------------------------------
# average-checkpoints


def _copy_exp(good, tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("epoch-1.pt", "epoch-2.pt"):
        shutil.copy(good["exp"] / name, exp / name)
    return exp


@pytest.mark.parametrize("kind", [*BAD_CHECKPOINTS[1:], "lm"])
def test_average_wrong_checkpoint(kind, good, tmp_path, capsys):
    exp = _copy_exp(good, tmp_path)
    bad = write_bad_checkpoint(kind, exp / "epoch-1.pt", good["ckpt"])
    argv = ["--exp-dir", str(exp), "--avg", "2", "--out", str(tmp_path / "avg.pt")]
    code, err = run_main(average.main, argv, capsys)
    assert_user_error(code, err, "average-checkpoints", bad)
    assert not (tmp_path / "avg.pt").exists()


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        ("no exp dir", ["--avg", "2"], "no such exp dir"),
        ("empty exp dir", ["--avg", "2"], "no epoch-N.pt"),
        ("one epoch only", ["--avg", "2"], "missing [1]"),
        ("good", ["--avg", "0"], "--avg"),
    ],
)
def test_average_missing_inputs(setup, argv, message, good, tmp_path, capsys):
    exp = tmp_path / "exp"
    if setup == "good":
        _copy_exp(good, tmp_path)
    elif setup != "no exp dir":
        exp.mkdir()
    if setup == "one epoch only":
        shutil.copy(good["ckpt"], exp / "epoch-2.pt")
    code, err = run_main(average.main, ["--exp-dir", str(exp), *argv], capsys)
    line = assert_user_error(code, err, "average-checkpoints", message)
    if setup != "good":
        assert str(exp) in line


def test_average_read_only_output_folder(good, tmp_path, capsys):
    exp = _copy_exp(good, tmp_path)
    out_dir = tmp_path / "ro"
    with read_only(out_dir):
        argv = ["--exp-dir", str(exp), "--avg", "2", "--out", str(out_dir / "avg.pt")]
        code, err = run_main(average.main, argv, capsys)
    assert_user_error(code, err, "average-checkpoints", out_dir)


def test_average_read_only_exp_dir_default_output(good, tmp_path, capsys):
    exp = _copy_exp(good, tmp_path)
    with read_only(exp):
        code, err = run_main(average.main, ["--exp-dir", str(exp), "--avg", "2"], capsys)
    assert_user_error(code, err, "average-checkpoints", exp)


def test_average_read_only_exp_dir_is_read_without_lock(good, tmp_path, capsys):
    exp = _copy_exp(good, tmp_path)
    out = tmp_path / "avg.pt"
    with read_only(exp):
        code, _ = run_main(
            average.main, ["--exp-dir", str(exp), "--avg", "2", "--out", str(out)], capsys
        )
    assert code == 0 and out.is_file()


def test_average_while_trainer_holds_exp_dir(good, tmp_path, capsys):
    exp = _copy_exp(good, tmp_path)
    with locked_by_other_process(exp) as pid:
        code, err = run_main(average.main, ["--exp-dir", str(exp), "--avg", "2"], capsys)
    assert_user_error(code, err, "average-checkpoints", exp, f"pid {pid}")
    assert not list(exp.glob("*avg*"))


# ---------------------------------------------------------------------------------------------
# decode-asr


def _decode_args(good, out_dir: Path, **over) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--exp-dir",
        str(good["exp"]),
        "--checkpoint",
        str(over.get("checkpoint", good["ckpt"])),
        "--bpe-model",
        str(over.get("bpe_model", good["bpe"])),
        "--cuts",
        *[str(c) for c in over.get("cuts", [good["cuts"]])],
        "--method",
        "greedy",
        "--out-dir",
        str(out_dir),
    ]


@pytest.mark.parametrize("kind", [*BAD_CHECKPOINTS, "lm"])
def test_decode_wrong_checkpoint(kind, good, tmp_path, capsys):
    bad = write_bad_checkpoint(kind, tmp_path / "model.pt", good["ckpt"])
    out = tmp_path / "dec"
    code, err = run_main(decode.main, _decode_args(good, out, checkpoint=bad), capsys)
    line = assert_user_error(code, err, "decode-asr", bad)
    if kind == "lm":
        assert "not a train-asr checkpoint" in line
    assert not list(out.glob("nbest-*"))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing cuts", "CutSet not found"),
        ("empty cuts", "holds no cuts"),
        ("supervisions as cuts", "not a CutSet"),
        ("missing bpe model", "BPE model not found"),
        ("text as bpe model", "not a sentencepiece model"),
    ],
)
def test_decode_bad_input_file(case, message, good, tmp_path, capsys):
    bad = {
        "missing cuts": tmp_path / "nope.jsonl.gz",
        "empty cuts": good["empty"],
        "supervisions as cuts": good["sups"],
        "missing bpe model": tmp_path / "nope.model",
        "text as bpe model": good["text"],
    }[case]
    over = {"bpe_model": bad} if "bpe" in case else {"cuts": [good["cuts"], bad]}
    out = tmp_path / "dec"
    code, err = run_main(decode.main, _decode_args(good, out, **over), capsys)
    assert message in assert_user_error(code, err, "decode-asr", bad)
    assert not list(out.glob("nbest-*"))  # nothing decoded: every input is checked first


def test_decode_empty_set_is_an_error_not_a_zero_wer(good, tmp_path, capsys):
    out = tmp_path / "dec"
    code, err = run_main(decode.main, _decode_args(good, out, cuts=[good["empty"]]), capsys)
    assert_user_error(code, err, "decode-asr", good["empty"])
    assert not list(out.glob("wer-summary-*"))


def test_decode_two_sets_with_one_name(good, tmp_path, capsys):
    other = tmp_path / "x" / good["cuts"].name
    other.parent.mkdir()
    shutil.copy(good["cuts"], other)
    argv = _decode_args(good, tmp_path / "dec", cuts=[good["cuts"], other])
    code, err = run_main(decode.main, argv, capsys)
    assert_user_error(code, err, "decode-asr", "--cuts", "overwrite")


def test_decode_read_only_output_folder(good, tmp_path, capsys):
    out = tmp_path / "dec"
    with read_only(out):
        code, err = run_main(decode.main, _decode_args(good, out), capsys)
    assert_user_error(code, err, "decode-asr", out)


def test_decode_output_folder_in_use(good, tmp_path, capsys):
    out = tmp_path / "dec"
    with locked_by_other_process(out) as pid:
        code, err = run_main(decode.main, _decode_args(good, out), capsys)
    assert_user_error(code, err, "decode-asr", out, f"pid {pid}")
    assert not list(out.glob("nbest-*"))
