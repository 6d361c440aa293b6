"""compute-fbank --speed-perturb: stored features of speed-perturbed copies of the train split."""

from __future__ import annotations

import dataclasses

import pytest
from lhotse import load_manifest

from common.io import InputError
from data_prep.fbank import FbankOptions, compute_fbank, speed_cuts_path


def _opts(md, tmp_path, **kw):
    return FbankOptions(manifest_dir=md, output_dir=tmp_path / "fbank", num_jobs=1, **kw)


def test_speed_copies_are_stored_beside_the_train_split(tiny_manifests, tmp_path):
    opts = _opts(tiny_manifests, tmp_path, speed_perturb=(0.9, 1.1))
    out = compute_fbank(opts)
    train = {c.id: c for c in load_manifest(out["train"])}
    for f in (0.9, 1.1):
        path = speed_cuts_path(opts.output_dir, "snips", f)
        assert path.name == f"snips_cuts_train_sp{f:g}.jsonl.gz"
        copies = list(load_manifest(path))
        assert sorted(c.id for c in copies) == sorted(f"{i}_sp{f}" for i in train)
        for c in copies:
            orig = train[c.id.rsplit("_sp", 1)[0]]
            assert c.has_features and c.num_features == orig.num_features
            # resampled: duration and frame count scale by 1/f (a frame or sample of rounding)
            assert c.duration == pytest.approx(orig.duration / f, abs=1e-3)
            assert c.num_frames == pytest.approx(orig.num_frames / f, abs=1.5)
            assert c.supervisions[0].id == f"{orig.supervisions[0].id}_sp{f}"
            assert c.supervisions[0].text == orig.supervisions[0].text
            assert c.load_features().shape == (c.num_frames, 80)
    # the split's own manifest holds no copy
    assert not any("_sp" in i for i in train)
    # dev/test are never perturbed
    assert not list(opts.output_dir.glob("*_dev_sp*")) and not list(
        opts.output_dir.glob("*_test_sp*")
    )


def test_existing_copies_are_skipped_and_a_missing_one_is_made(tiny_manifests, tmp_path, caplog):
    opts = _opts(tiny_manifests, tmp_path, speed_perturb=(0.9,))
    compute_fbank(opts)
    first = speed_cuts_path(opts.output_dir, "snips", 0.9)
    before = first.read_bytes()
    caplog.set_level("INFO")
    compute_fbank(_opts(tiny_manifests, tmp_path, speed_perturb=(0.9, 1.1)))
    assert first.read_bytes() == before
    assert "exists: skipping speed x0.9" in caplog.text
    assert speed_cuts_path(opts.output_dir, "snips", 1.1).is_file()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"speed_perturb": (1.0,)}, "not 1"),
        ({"speed_perturb": (3.0,)}, r"in \[0.5, 2\]"),
        ({"speed_perturb": (0.9, 0.9)}, "repeated"),
        ({"speed_perturb": (0.9,), "splits": ("dev", "test")}, "train split, not in --splits"),
    ],
)
def test_bad_speed_factors_are_refused_before_anything_is_written(
    tiny_manifests, tmp_path, kw, match
):
    opts = _opts(tiny_manifests, tmp_path, **kw)
    with pytest.raises(InputError, match=match):
        compute_fbank(opts)
    assert not opts.output_dir.exists() or not list(opts.output_dir.iterdir())


def test_the_train_renders_split_gets_its_speed_copies_too(tiny_manifests, tmp_path):
    """prepare-snips --train-renders writes the split train_renders (ids <id>_r<k>); with it in
    --splits, its speed copies are stored beside train's (ids <id>_r<k>_sp<f>), and the
    manifests pass validate-manifests (its pair only: the NLU set is train's)."""
    from lhotse import RecordingSet, SupervisionSet

    from data_prep.validate import ValidateOptions, validate_manifests

    md = tiny_manifests
    recs = load_manifest(md / "snips_recordings_train.jsonl.gz")
    sups = load_manifest(md / "snips_supervisions_train.jsonl.gz")
    RecordingSet.from_recordings(dataclasses.replace(r, id=f"{r.id}_r2") for r in recs).to_file(
        md / "snips_recordings_train_renders.jsonl.gz"
    )
    SupervisionSet.from_segments(
        dataclasses.replace(s, id=f"{s.id}_r2", recording_id=f"{s.recording_id}_r2") for s in sups
    ).to_file(md / "snips_supervisions_train_renders.jsonl.gz")
    splits = ("train", "train_renders", "dev", "test")
    assert validate_manifests(ValidateOptions(manifest_dir=md, splits=splits)) > 0
    opts = _opts(md, tmp_path, splits=splits, speed_perturb=(0.9,))
    out = compute_fbank(opts)
    renders = load_manifest(out["train_renders"])
    utts = sorted(c.supervisions[0].id for c in renders)
    assert utts == sorted(f"{c.supervisions[0].id}_r2" for c in load_manifest(out["train"]))
    path = speed_cuts_path(opts.output_dir, "snips", 0.9, "train_renders")
    assert path.name == "snips_cuts_train_renders_sp0.9.jsonl.gz"
    slow = load_manifest(path)
    assert sorted(c.id for c in slow) == sorted(f"{c.id}_sp0.9" for c in renders)
    assert sorted(c.supervisions[0].id for c in slow) == [f"{u}_sp0.9" for u in utts]
    assert speed_cuts_path(opts.output_dir, "snips", 0.9).is_file()
