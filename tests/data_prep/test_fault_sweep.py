"""Every data_prep entry point x every common fault: one line ``prog: error: ...``, exit 2.

Issue 10, item 8: a missing input file or folder, an empty input, a read-only output folder and
input that is not UTF-8 each end the run with exit status 2 and one error line that names the
file (or folder), and never with a traceback. Each entry point's ``main(argv)`` runs in-process
on tiny inputs built here (no TTS), so the whole module takes a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_prep import bpe, fbank, lm_text, rare_words, snips, validate
from tests.conftest import HEADER
from tests.data_prep.conftest import read_only_dir, write_gz, write_tiny_manifests

MAINS = {
    "prepare-snips": snips.main,
    "validate-manifests": validate.main,
    "compute-fbank": fbank.main,
    "train-bpe": bpe.main,
    "prepare-lm-text": lm_text.main,
    "compute-rare-words": rare_words.main,
}
LATIN1_JSONL = b'{"id": "caf\xe9", "recording_id": "x", "start": 0, "duration": 1}\n'


@dataclass
class Case:
    argv: list[str]
    names: str  # what the error line must name: a file, folder or utterance id
    read_only: Path | None = None  # made read-only while the entry point runs


def _corpus(w: Path, mini_snips_dir: Path, train: bytes | None = None) -> Path:
    d = w / "corpus"
    shutil.copytree(mini_snips_dir, d)
    if train is not None:
        (d / "train.tsv").write_bytes(train)
    return d


def _prepare_snips(fault: str, w: Path, mini: Path) -> Case:
    out = ["--output-dir", str(w / "m"), "--audio-dir", str(w / "audio")]
    if fault == "missing":
        return Case(["--corpus-dir", str(w / "nope"), *out], str(w / "nope"))
    if fault == "empty":
        d = _corpus(w, mini, b"")
        return Case(["--corpus-dir", str(d), *out], f"{d / 'train.tsv'}:1")
    if fault == "non_utf8":
        d = _corpus(w, mini, (HEADER + "a1\tplay café\tO O\tPlayMusic\n").encode("latin-1"))
        return Case(["--corpus-dir", str(d), *out], f"{d / 'train.tsv'}:2")
    if fault == "read_only":
        d = _corpus(w, mini)
        ro = w / "ro"
        return Case([*out, "--corpus-dir", str(d), "--output-dir", str(ro)], str(ro), ro)
    if fault == "unknown_tts_backend":  # a TTSError, not an InputError: still one line
        d = _corpus(w, mini)
        return Case(["--corpus-dir", str(d), "--tts-backend", "nope-tts", *out], "'nope-tts'")
    if fault == "runaway_row":
        row = f"huge-1\t{' '.join(['jazz'] * 500)}\t{' '.join(['O'] * 500)}\tPlayMusic\n"
        d = _corpus(w, mini, (mini / "train.tsv").read_bytes() + row.encode())
        return Case(["--corpus-dir", str(d), "--strict", "true", *out], "train.tsv:14: huge-1")
    raise KeyError(fault)


def _validate_manifests(fault: str, w: Path, mini: Path) -> Case:
    md = write_tiny_manifests(w / "tiny")
    argv = ["--manifest-dir", str(md)]
    if fault == "missing":
        return Case(["--manifest-dir", str(w / "nope")], str(w / "nope"))
    if fault == "empty":
        sups = write_gz(md / "snips_supervisions_dev.jsonl.gz", b"")
        return Case(argv, f"{sups}: empty manifest")
    if fault == "non_utf8":
        (md / "snips_intents.txt").write_bytes(b"PlayMusic\nCaf\xe9\n")
        return Case(argv, f"{md / 'snips_intents.txt'}:")
    if fault == "deleted_audio":
        wav = md.parent / "audio" / "dev" / "tiny-dev-1.wav"
        wav.unlink()
        return Case(argv, f"recording tiny-dev-1: {wav}: no such file")
    raise KeyError(fault)


def _compute_fbank(fault: str, w: Path, mini: Path) -> Case:
    md = write_tiny_manifests(w / "tiny")
    argv = ["--manifest-dir", str(md), "--num-jobs", "1"]
    out = ["--output-dir", str(w / "fbank")]
    if fault == "missing":
        return Case(["--manifest-dir", str(w / "nope"), *out], str(w / "nope"))
    if fault == "empty":
        recs = write_gz(md / "snips_recordings_train.jsonl.gz", b"")
        return Case([*argv, *out], f"{recs}: empty manifest")
    if fault == "non_utf8":
        sups = write_gz(md / "snips_supervisions_train.jsonl.gz", LATIN1_JSONL)
        return Case([*argv, *out], f"{sups}:1: not UTF-8")
    if fault == "read_only":
        ro = w / "ro"
        return Case([*argv, "--output-dir", str(ro)], str(ro), ro)
    if fault == "deleted_audio":
        wav = md.parent / "audio" / "test" / "tiny-test-0.wav"
        wav.unlink()
        return Case([*argv, *out], "utterance tiny-test-0 (cut tiny-test-0")
    raise KeyError(fault)


def _supervision_input(fault: str, w: Path, option: str, out: list[str]) -> Case:
    """train-bpe and compute-rare-words: one supervisions manifest in, one folder out."""
    md = write_tiny_manifests(w / "tiny")
    good = md / "snips_supervisions_train.jsonl.gz"
    if fault == "missing":
        return Case([option, str(w / "nope.jsonl.gz"), *out], str(w / "nope.jsonl.gz"))
    if fault == "empty":
        p = write_gz(w / "empty.jsonl.gz", b"")
        return Case([option, str(p), *out], f"{p}: empty manifest")
    if fault == "non_utf8":
        p = write_gz(w / "latin1.jsonl.gz", LATIN1_JSONL)
        return Case([option, str(p), *out], f"{p}:1: not UTF-8")
    if fault == "read_only":
        ro = w / "ro"
        return Case([option, str(good), out[0], str(ro)], str(ro), ro)
    raise KeyError(fault)


def _train_bpe(fault: str, w: Path, mini: Path) -> Case:
    out = ["--lang-dir", str(w / "lang_bpe"), "--vocab-size", "20"]
    return _supervision_input(fault, w, "--supervisions", out)


def _compute_rare_words(fault: str, w: Path, mini: Path) -> Case:
    return _supervision_input(fault, w, "--supervisions", ["--lang-dir", str(w / "lang")])


def _prepare_lm_text(fault: str, w: Path, mini: Path) -> Case:
    md = write_tiny_manifests(w / "tiny")
    text_dir = w / "lm_text"
    text_dir.mkdir()
    (text_dir / "chat.txt").write_text("set an alarm\ntell me a joke\n", encoding="utf-8")
    argv = ["--manifest-dir", str(md), "--lm-text-dir", str(text_dir)]
    out = ["--output-dir", str(w / "lm")]
    if fault == "missing":
        argv[1] = str(w / "nope")
        return Case([*argv, *out], str(w / "nope"))
    if fault == "missing_text_dir":
        argv[3] = str(w / "nope")
        return Case([*argv, *out], f"--lm-text-dir {w / 'nope'}: no such folder")
    if fault == "empty":
        p = write_gz(md / "snips_nlu_train.jsonl.gz", b"")
        return Case([*argv, *out], f"{p}: empty manifest")
    if fault == "non_utf8":
        (text_dir / "chat.txt").write_bytes(b"set an alarm\ncaf\xe9 au lait\n")
        return Case([*argv, *out], f"{text_dir / 'chat.txt'}:")
    if fault == "read_only":
        ro = w / "ro"
        return Case([*argv, "--output-dir", str(ro)], str(ro), ro)
    raise KeyError(fault)


BUILDERS = {
    "prepare-snips": _prepare_snips,
    "validate-manifests": _validate_manifests,
    "compute-fbank": _compute_fbank,
    "train-bpe": _train_bpe,
    "prepare-lm-text": _prepare_lm_text,
    "compute-rare-words": _compute_rare_words,
}
COMMON_FAULTS = ("missing", "empty", "read_only", "non_utf8")
# validate-manifests writes nothing: no output folder to make read-only
CASES = [
    (prog, fault)
    for prog in MAINS
    for fault in COMMON_FAULTS
    if not (prog == "validate-manifests" and fault == "read_only")
] + [
    ("prepare-snips", "runaway_row"),
    ("prepare-snips", "unknown_tts_backend"),
    ("validate-manifests", "deleted_audio"),
    ("compute-fbank", "deleted_audio"),
    ("prepare-lm-text", "missing_text_dir"),
]


@pytest.mark.parametrize("prog, fault", CASES, ids=[f"{p}-{f}" for p, f in CASES])
def test_fault_gives_one_error_line_naming_the_input(prog, fault, tmp_path, mini_snips_dir, capsys):
    case = BUILDERS[prog](fault, tmp_path, mini_snips_dir)
    capsys.readouterr()
    ctx = read_only_dir(case.read_only) if case.read_only else contextlib.nullcontext()
    with ctx, pytest.raises(SystemExit) as exc:
        MAINS[prog](case.argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2, err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, err
    assert case.names in errors[0], errors[0]
