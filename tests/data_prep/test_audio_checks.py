"""Audio that is missing, truncated, at the wrong rate or not finite is never silently lost.

compute-fbank (issue 10, item 2) and validate-manifests (item 3) on tiny manifests with real
WAVs (no TTS), plus the checks they share (data_prep/checks.py).
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import pytest
from lhotse import Recording, RecordingSet, load_manifest

from common.io import InputError, write_manifest
from data_prep import fbank
from data_prep.checks import (
    AudioProblem,
    load_lhotse_manifest,
    read_audio_header,
    recording_audio_problems,
)
from data_prep.fbank import FbankOptions, compute_fbank
from data_prep.validate import ValidateOptions, validate_manifests
from tests.data_prep.conftest import tiny_utt_id, write_gz, write_tone


def _wav(md, split, i):
    return md.parent / "audio" / split / f"{tiny_utt_id(split, i)}.wav"


def _truncate_to_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 2])


def _relative_paths(rec, root):
    d = rec.to_dict()
    d["sources"] = [{**s, "source": str(Path(s["source"]).relative_to(root))} for s in d["sources"]]
    return Recording.from_dict(d)


def _fbank_opts(md, tmp_path, **kw):
    return FbankOptions(manifest_dir=md, output_dir=tmp_path / "fbank", num_jobs=1, **kw)


# ---- data_prep.checks ------------------------------------------------------------------------


def test_header_of_a_truncated_wav_is_rejected(tmp_path):
    wav = write_tone(tmp_path / "a.wav", seconds=1.0)
    assert read_audio_header(wav).num_frames == 16000
    _truncate_to_half(wav)
    with pytest.raises(AudioProblem, match=r"truncated: the header declares 32000 bytes"):
        read_audio_header(wav)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage"), "not a readable audio file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: write_tone(p, seconds=0.0), "no samples"),
    ],
)
def test_unusable_audio_reasons(tmp_path, make, reason):
    p = tmp_path / "x.wav"
    make(p)
    with pytest.raises(AudioProblem, match=reason):
        read_audio_header(p)


def test_a_format_libsndfile_cannot_read_falls_back_to_lhotse(tmp_path):
    p = tmp_path / "x.m4a"
    p.write_bytes(b"\x00\x00\x00\x18ftypM4A garbage")
    with pytest.raises(AudioProblem, match="not a readable audio file"):
        read_audio_header(p)


def test_recording_problems_name_file_and_reason(tiny_manifests):
    recs = load_lhotse_manifest(tiny_manifests / "snips_recordings_dev.jsonl.gz", RecordingSet)
    rec = recs[tiny_utt_id("dev", 0)]
    wav = _wav(tiny_manifests, "dev", 0)
    assert recording_audio_problems(rec, "always") == []
    write_tone(wav, seconds=0.3, rate=8000)
    assert recording_audio_problems(rec) == [
        f"{wav}: sampled at 8000 Hz, the manifest says 16000 Hz"
    ]
    write_tone(wav, seconds=0.3, channels=2)
    assert recording_audio_problems(rec) == [f"{wav}: 2 channels, the manifest says 1"]
    write_tone(wav, seconds=0.3, subtype="FLOAT", nan_at=1600)
    assert recording_audio_problems(rec, "never") == []
    (problem,) = recording_audio_problems(rec, "float")
    assert problem.startswith(f"{wav}: sample 1600 (0.100 s) is not finite (nan)")


def test_manifest_loader_names_file_and_line(tmp_path, tiny_manifests):
    sups = tiny_manifests / "snips_supervisions_dev.jsonl.gz"
    with pytest.raises(InputError, match=r"supervisions_dev\.jsonl\.gz:1: not a Lhotse recording"):
        load_lhotse_manifest(sups, RecordingSet)
    bad = write_gz(tmp_path / "bad.jsonl.gz", b'{"id": "caf\xe9"}\n{"id": "a"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl\.gz:1: not UTF-8"):
        load_lhotse_manifest(bad, RecordingSet)
    empty = write_gz(tmp_path / "empty.jsonl.gz", b"")
    with pytest.raises(InputError, match=r"empty\.jsonl\.gz: empty manifest"):
        load_lhotse_manifest(empty, RecordingSet)
    assert len(load_lhotse_manifest(empty, RecordingSet, allow_empty=True)) == 0
    recs = tiny_manifests / "snips_recordings_dev.jsonl.gz"
    lines = gzip.decompress(recs.read_bytes()).splitlines(keepends=True)
    dup = write_gz(tmp_path / "dup.jsonl.gz", lines[0] + lines[0])
    with pytest.raises(InputError, match=r"dup\.jsonl\.gz:2: duplicate recording id"):
        load_lhotse_manifest(dup, RecordingSet)


# ---- compute-fbank ---------------------------------------------------------------------------


def _nothing_written(out):
    return not list(out.glob("*.jsonl.gz")) and not list(out.glob("*feats*"))


def test_fbank_deleted_wav_names_utterance_and_path_and_writes_nothing(tmp_path, tiny_manifests):
    wav = _wav(tiny_manifests, "test", 1)  # the last split: every split is checked first
    wav.unlink()
    opts = _fbank_opts(tiny_manifests, tmp_path)
    with pytest.raises(InputError) as e:
        compute_fbank(opts)
    assert f"utterance {tiny_utt_id('test', 1)} (cut " in str(e.value)
    assert f"): {wav}: no such file" in str(e.value)
    assert "--skip-bad-audio" in str(e.value)
    assert _nothing_written(opts.output_dir)


def test_fbank_relative_paths_from_another_folder(tmp_path, tiny_manifests, monkeypatch):
    root = tiny_manifests.parent
    for split in ("train", "dev", "test"):
        path = tiny_manifests / f"snips_recordings_{split}.jsonl.gz"
        write_manifest(path, [_relative_paths(r, root) for r in load_manifest(path)])
    monkeypatch.chdir(root)  # from here the relative paths resolve: it works
    compute_fbank(_fbank_opts(tiny_manifests, tmp_path / "ok"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(InputError, match=r"a relative path: looked up from the current folder"):
        compute_fbank(_fbank_opts(tiny_manifests, tmp_path / "bad"))


def test_fbank_skip_bad_audio_lists_skipped_cuts(tmp_path, tiny_manifests, caplog):
    bad_id = tiny_utt_id("dev", 0)
    _truncate_to_half(_wav(tiny_manifests, "dev", 0))
    opts = _fbank_opts(tiny_manifests, tmp_path, skip_bad_audio=True)
    with caplog.at_level(logging.INFO):
        out = compute_fbank(opts)
    cuts = load_manifest(out["dev"])
    assert [c.recording_id for c in cuts] == [tiny_utt_id("dev", 1)]
    assert len(load_manifest(out["train"])) == 2
    (line,) = (opts.output_dir / "skipped-dev.txt").read_text().splitlines()
    cut_id, rec_id, reason = line.split("\t")
    assert cut_id.startswith(bad_id) and rec_id == bad_id and "truncated" in reason
    assert (opts.output_dir / "skipped-train.txt").read_text() == ""
    assert "dev: 1 cuts skipped for bad audio" in caplog.text


def test_fbank_zero_cuts_is_an_error_even_when_skipping(tmp_path, tiny_manifests):
    for i in (0, 1):
        _wav(tiny_manifests, "dev", i).unlink()
    opts = _fbank_opts(tiny_manifests, tmp_path, skip_bad_audio=True)
    with pytest.raises(InputError, match=r"split dev has no usable cut \(2 of 2"):
        compute_fbank(opts)
    assert _nothing_written(opts.output_dir)


def test_fbank_nan_samples_name_the_utterance(tmp_path, tiny_manifests):
    write_tone(_wav(tiny_manifests, "train", 1), seconds=0.35, subtype="FLOAT", nan_at=10)
    with pytest.raises(InputError, match=rf"utterance {tiny_utt_id('train', 1)} .*is not finite"):
        compute_fbank(_fbank_opts(tiny_manifests, tmp_path))


def test_fbank_wrong_sampling_rate(tmp_path, tiny_manifests):
    # the file is 8 kHz, the manifest says 16 kHz
    write_tone(_wav(tiny_manifests, "dev", 1), seconds=0.35, rate=8000)
    with pytest.raises(InputError, match=r"sampled at 8000 Hz, the manifest says 16000 Hz"):
        compute_fbank(_fbank_opts(tiny_manifests, tmp_path))
    # file and manifest agree on 8 kHz, the features are 16 kHz
    path = tiny_manifests / "snips_recordings_dev.jsonl.gz"
    recs = load_manifest(path)
    bad_id = tiny_utt_id("dev", 1)
    fixed = [
        r.from_dict({**r.to_dict(), "sampling_rate": 8000, "num_samples": 2800})
        if r.id == bad_id
        else r
        for r in recs
    ]
    write_manifest(path, fixed)
    with pytest.raises(
        InputError,
        match=rf"utterance {bad_id} .*sampled at 8000 Hz, features are computed at 16000 Hz",
    ):
        compute_fbank(_fbank_opts(tiny_manifests, tmp_path))


def test_fbank_cuts_lost_inside_lhotse_are_an_error(tmp_path, tiny_manifests, monkeypatch):
    # Should the checks miss a file Lhotse cannot load, its silent drop is still caught.
    monkeypatch.setattr(fbank, "recording_audio_problems", lambda rec, read_samples: [])
    _wav(tiny_manifests, "dev", 0).unlink()
    opts = _fbank_opts(tiny_manifests, tmp_path, splits=("dev",))
    with pytest.raises(
        InputError,
        match=rf"could not load the audio of 1 cuts \(utterances {tiny_utt_id('dev', 0)}",
    ):
        compute_fbank(opts)
    assert not (opts.output_dir / "snips_cuts_dev.jsonl.gz").exists()


def test_fbank_num_mel_bins_option_and_reproducible_manifest(tmp_path, tiny_manifests):
    out = tmp_path / "fbank"
    argv = ["--manifest-dir", str(tiny_manifests), "--output-dir", str(out), "--num-jobs", "1"]
    fbank.main([*argv, "--num-mel-bins", "40", "--splits", "dev"])
    cuts = load_manifest(out / "snips_cuts_dev.jsonl.gz")
    assert cuts[0].load_features().shape[1] == 40
    raw = (out / "snips_cuts_dev.jsonl.gz").read_bytes()
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0: same content, same bytes
    assert not (out / "skipped-dev.txt").exists()


# ---- validate-manifests ----------------------------------------------------------------------


def test_validate_ok(tiny_manifests):
    assert validate_manifests(ValidateOptions(manifest_dir=tiny_manifests, check_samples=True))


def test_validate_reports_every_audio_problem(tiny_manifests, caplog):
    deleted = _wav(tiny_manifests, "train", 0)
    deleted.unlink()
    truncated = _wav(tiny_manifests, "dev", 1)
    _truncate_to_half(truncated)
    resampled = _wav(tiny_manifests, "test", 0)
    write_tone(resampled, seconds=0.3, rate=8000)
    nan = _wav(tiny_manifests, "test", 1)
    write_tone(nan, seconds=0.35, subtype="FLOAT", nan_at=5)
    with caplog.at_level(logging.ERROR), pytest.raises(InputError) as e:
        validate_manifests(ValidateOptions(manifest_dir=tiny_manifests))
    # deleted WAV: once (train and train_all share the recording), NaN: not without samples
    assert re.search(
        r"manifests: 3 problem\(s\) found .*recording tiny-train-0: .*no such file", str(e.value)
    )
    assert f"recording tiny-train-0: {deleted}: no such file" in caplog.text
    assert f"recording tiny-dev-1: {truncated}: truncated" in caplog.text
    assert f"recording tiny-test-0: {resampled}: sampled at 8000 Hz" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(InputError, match="4 problem"):
        validate_manifests(ValidateOptions(manifest_dir=tiny_manifests, check_samples=True))
    assert f"recording tiny-test-1: {nan}: sample 5 " in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(InputError, match="first 1 listed"):
        validate_manifests(ValidateOptions(manifest_dir=tiny_manifests, max_errors=1))
    assert len(caplog.records) == 1


def test_validate_collects_nlu_and_manifest_problems(tiny_manifests, caplog):
    path = tiny_manifests / "snips_nlu_dev.jsonl.gz"
    sups = load_manifest(path)
    write_manifest(
        path,
        [s.from_dict({**s.to_dict(), "custom": {"intent": "Nope", "slots": ["O"]}}) for s in sups],
    )
    write_gz(tiny_manifests / "snips_supervisions_test.jsonl.gz", b"")
    with caplog.at_level(logging.ERROR), pytest.raises(InputError, match="5 problem"):
        validate_manifests(ValidateOptions(manifest_dir=tiny_manifests))
    assert "snips_nlu_dev.jsonl.gz: tiny-dev-0: unknown intent 'Nope'" in caplog.text
    assert "snips_nlu_dev.jsonl.gz: tiny-dev-1: 3 words but 1 slot tags" in caplog.text
    assert "snips_supervisions_test.jsonl.gz: empty manifest" in caplog.text
