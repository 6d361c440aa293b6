"""Tiny ASR data built once per session: ~20 espeak-ng utterances, fbank cuts, a BPE model."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

SENTENCES = [
    "play some jazz",
    "what is the weather",
    "book a table",
    "add this song",
    "rate this book",
    "find the movie",
    "play the radio",
    "is it raining",
    "book a flight",
    "add to playlist",
    "show me the news",
    "play my music",
    "will it snow",
    "find a cinema",
    "rate it five stars",
    "turn up the volume",
    "what time is it",
    "play pop songs",
    "find the book",
    "is it sunny",
]


@pytest.fixture(scope="session")
def asr_data(tmp_path_factory) -> dict[str, Path]:
    """Returns paths: ``cuts`` (CutSet with fbank), ``bpe_model``, ``dir``."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from lhotse import (
        CutSet,
        Fbank,
        FbankConfig,
        LilcomChunkyWriter,
        Recording,
        RecordingSet,
        SupervisionSegment,
        SupervisionSet,
    )

    from data_prep.bpe import BpeOptions, train_bpe

    root = tmp_path_factory.mktemp("asr_data")
    recs, sups = [], []
    for i, text in enumerate(SENTENCES):
        wav = root / f"utt{i:02d}.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        rec = Recording.from_file(wav, recording_id=f"utt{i:02d}")
        recs.append(rec)
        sups.append(
            SupervisionSegment(
                id=f"utt{i:02d}",
                recording_id=rec.id,
                start=0.0,
                duration=rec.duration,
                text=text,
                language="English",
            )
        )
    sup_set = SupervisionSet.from_segments(sups)
    sup_path = root / "sups.jsonl.gz"
    sup_set.to_file(sup_path)
    cuts = CutSet.from_manifests(RecordingSet.from_recordings(recs), sup_set).resample(16000)
    cuts = cuts.compute_and_store_features(
        extractor=Fbank(FbankConfig(num_mel_bins=80)),
        storage_path=root / "feats",
        storage_type=LilcomChunkyWriter,
        num_jobs=1,
    )
    cuts_path = root / "cuts.jsonl.gz"
    cuts.to_file(cuts_path)
    lang = train_bpe(BpeOptions(supervisions=sup_path, lang_dir=root / "lang_bpe", vocab_size=40))
    return {"cuts": cuts_path, "bpe_model": lang / "bpe.model", "dir": root}


@pytest.fixture(scope="session")
def cuts(asr_data):
    """The fixture's fbank CutSet, loaded."""
    from asr.data import load_cuts

    return load_cuts(asr_data["cuts"])


@pytest.fixture(scope="session")
def tok(asr_data):
    """The fixture's BPE tokenizer."""
    from asr.data import Tokenizer

    return Tokenizer(asr_data["bpe_model"])


def tiny_cfg(asr_data, exp_dir, **kw):
    from asr.config import get_model_preset, get_train_preset

    cfg = get_train_preset("tiny")
    cfg = dataclasses.replace(
        cfg,
        exp_dir=exp_dir,
        train_cuts=asr_data["cuts"],
        dev_cuts=asr_data["cuts"],
        bpe_model=asr_data["bpe_model"],
        **kw,
    )
    return get_model_preset("tiny"), cfg


@pytest.fixture(scope="session")
def trained_tiny(asr_data, tmp_path_factory):
    """The tiny preset trained on the 20 fixture utterances (shared by decode tests)."""
    exp = tmp_path_factory.mktemp("exp_tiny")
    model_cfg, cfg = tiny_cfg(asr_data, exp)
    from asr.train import run

    run(0, 1, model_cfg, cfg)
    return exp


@pytest.fixture(scope="session")
def copy_paths(asr_data, cuts, tmp_path_factory):
    """Speed copies (0.9, 1.1) of the first 12 cuts, stored as compute-fbank stores them."""
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter

    root = tmp_path_factory.mktemp("speed_copies")
    paths = []
    for f in (0.9, 1.1):
        copies = CutSet.from_cuts(c.drop_features().perturb_speed(f) for c in cuts.subset(first=12))
        stored = copies.compute_and_store_features(
            extractor=Fbank(FbankConfig(num_mel_bins=80)),
            storage_path=root / f"feats_sp{f:g}",
            storage_type=LilcomChunkyWriter,
            num_jobs=1,
        )
        path = root / f"cuts_sp{f:g}.jsonl.gz"
        stored.to_file(path)
        paths.append(path)
    return tuple(paths)
