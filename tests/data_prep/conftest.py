"""Helpers of the data_prep tests: tiny manifests with real WAVs (no TTS), read-only folders."""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from common.io import write_manifest

# (text, intent, BIO slots) per utterance; two per split
TINY_ROWS = {
    "train": [
        ("play some jazz", "PlayMusic", ["O", "O", "B-genre"]),
        ("book a table", "BookRestaurant", ["O", "O", "O"]),
    ],
    "dev": [
        ("play queen", "PlayMusic", ["O", "B-artist"]),
        ("is it sunny", "GetWeather", ["O", "O", "B-condition_description"]),
    ],
    "test": [
        ("rate this book", "RateBook", ["O", "O", "B-object_type"]),
        ("find the movie", "SearchCreativeWork", ["O", "O", "B-object_type"]),
    ],
}
TINY_INTENTS = sorted({intent for rows in TINY_ROWS.values() for _, intent, _ in rows})


def write_tone(
    path: Path,
    seconds: float = 0.3,
    rate: int = 16000,
    channels: int = 1,
    subtype: str = "PCM_16",
    nan_at: int | None = None,
) -> Path:
    """A quiet 440 Hz tone; ``nan_at``: that sample is NaN (float subtypes only)."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.1 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    if nan_at is not None:
        x[nan_at] = np.nan
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype=subtype)
    return path


def tiny_utt_id(split: str, i: int) -> str:
    return f"tiny-{split}-{i}"


def write_tiny_manifests(root: Path) -> Path:
    """SNIPS-style manifests of two utterances per split, with WAVs in ``root/audio``.

    Returns the manifest folder (``root/manifests``), laid out as prepare-snips writes it.
    """
    md = root / "manifests"
    md.mkdir(parents=True, exist_ok=True)
    for split, rows in TINY_ROWS.items():
        recs, sups = [], []
        for i, (text, intent, slots) in enumerate(rows):
            uid = tiny_utt_id(split, i)
            wav = write_tone(root / "audio" / split / f"{uid}.wav", seconds=0.3 + 0.05 * i)
            rec = Recording.from_file(wav, recording_id=uid)
            recs.append(rec)
            sups.append(
                SupervisionSegment(
                    id=uid,
                    recording_id=uid,
                    start=0.0,
                    duration=rec.duration,
                    channel=0,
                    text=text,
                    language="English",
                    custom={"intent": intent, "slots": slots},
                )
            )
        rec_set, sup_set = RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)
        write_manifest(md / f"snips_recordings_{split}.jsonl.gz", rec_set)
        write_manifest(md / f"snips_supervisions_{split}.jsonl.gz", sup_set)
        write_manifest(md / f"snips_nlu_{split}.jsonl.gz", sup_set)
        if split == "train":
            write_manifest(md / "snips_recordings_train_all.jsonl.gz", rec_set)
    (md / "snips_intents.txt").write_text("".join(f"{i}\n" for i in TINY_INTENTS))
    return md


def write_gz(path: Path, data: bytes) -> Path:
    """A gzip file holding ``data`` (e.g. an empty or a non-UTF-8 manifest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture()
def prepared(tmp_path, mini_snips_dir):
    """The mini SNIPS corpus through prepare_snips (with TTS) in ``tmp_path``; returns the config."""
    from data_prep.snips import PrepareSnipsConfig, prepare_snips

    cfg = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir,
        output_dir=tmp_path / "manifests",
        audio_dir=tmp_path / "audio",
        asr_train_subset=10,
    )
    prepare_snips(cfg)
    return cfg


@pytest.fixture()
def tiny_manifests(tmp_path) -> Path:
    """A fresh :func:`write_tiny_manifests` folder per test (tests may damage it)."""
    return write_tiny_manifests(tmp_path / "tiny")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE = 1


@contextlib.contextmanager
def _without_dac_override() -> Iterator[None]:
    """As root, drop CAP_DAC_OVERRIDE from this thread's effective set for the block.

    Root ignores permission bits, so a chmod-ed folder is not read-only to it (CI runs as
    root). Without the capability root is an ordinary owner of its own files: it reads them,
    but cannot write into a folder of mode 0555. The capability stays permitted and is raised
    again afterwards.
    """
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        pytest.skip("capget failed: cannot make a folder read-only for root")
    saved = data[0].effective
    data[0].effective = saved & ~(1 << _CAP_DAC_OVERRIDE)
    if libc.capset(ctypes.byref(hdr), data) != 0:
        pytest.skip("capset failed: cannot make a folder read-only for root")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(hdr), data)


@contextlib.contextmanager
def read_only_dir(folder: Path) -> Iterator[Path]:
    """``folder`` (created) is read-only for this process during the block."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        with _without_dac_override():
            probe = folder / ".probe"
            try:
                probe.touch()
            except PermissionError:
                pass
            else:
                probe.unlink()
                pytest.skip("cannot make a read-only folder on this machine")
            yield folder
    finally:
        folder.chmod(0o755)
