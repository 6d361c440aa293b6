"""Re-running ``train-asr``: a finished run (all epochs, ``--max-steps``) does nothing and says
so, a resumed run's logs keep unique increasing steps; options are honoured, not ignored."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch

from asr.train import run
from common.checkpoint import load_checkpoint

from .conftest import tiny_cfg


def _steps(path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _versions(paths) -> dict:
    """Identity of each file's content: an atomic rewrite gives a new inode (and mtime)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def _log(exp) -> str:
    return (exp / "log" / "log-train.txt").read_text()


def test_max_steps_rerun_does_nothing(asr_data, tmp_path):
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, max_steps=2)
    last = run(0, 1, model_cfg, cfg)
    assert load_checkpoint(last)["step"] == 2
    before = _versions([last])
    # the same command again: before the fix it trained step 3 (and 4, 5... on every re-run)
    assert run(0, 1, model_cfg, cfg) == last
    assert _versions([last]) == before
    assert load_checkpoint(last)["step"] == 2
    assert "--max-steps 2 reached (step 2)): nothing to do" in _log(tmp_path)
    # a larger budget continues from there
    last = run(0, 1, model_cfg, dataclasses.replace(cfg, max_steps=3))
    assert load_checkpoint(last)["step"] == 3


def test_finished_run_rerun_does_nothing(asr_data, tmp_path):
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=1)
    last = run(0, 1, model_cfg, cfg)
    before = _versions(tmp_path.glob("*.pt"))
    (tmp_path / "config.json").unlink()  # "killed" before it was written: re-created
    assert run(0, 1, model_cfg, cfg) == last
    assert _versions(tmp_path.glob("*.pt")) == before
    assert "all 1 epochs trained): nothing to do" in _log(tmp_path)
    assert (tmp_path / "config.json").is_file()


def test_resumed_logs_have_unique_increasing_steps(asr_data, tmp_path):
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=2, log_interval=1)
    run(0, 1, model_cfg, cfg)
    train_csv, valid_csv = tmp_path / "log" / "train.csv", tmp_path / "log" / "valid.csv"
    full_train, full_valid = _steps(train_csv), _steps(valid_csv)
    assert full_train == list(range(1, full_train[-1] + 1))
    # killed after epoch 2's log rows were written but before epoch-2.pt was renamed in place
    (tmp_path / "epoch-2.pt").unlink()
    run(0, 1, model_cfg, cfg)
    assert _steps(train_csv) == full_train  # before the fix: epoch 2's steps twice
    assert _steps(valid_csv) == full_valid


def test_spec_augment_takes_the_config_values(asr_data, tmp_path, monkeypatch):
    import lhotse.dataset

    seen = {}
    real = lhotse.dataset.SpecAugment

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    monkeypatch.setattr(lhotse.dataset, "SpecAugment", spy)
    model_cfg, cfg = tiny_cfg(
        asr_data,
        tmp_path,
        max_steps=1,
        spec_augment=True,
        spec_aug_from_epoch=1,
        spec_num_frame_masks=1,
        spec_frames_mask_size=7,
        spec_num_feature_masks=3,
        spec_features_mask_size=5,
    )
    run(0, 1, model_cfg, cfg)
    assert seen == {
        "time_warp_factor": 0,
        "num_frame_masks": 1,
        "frames_mask_size": 7,
        "num_feature_masks": 3,
        "features_mask_size": 5,
    }


def test_speed_perturbation_fbank_follows_feature_dim(asr_data):
    from asr.data import AsrDataset, Tokenizer, load_cuts

    cuts = load_cuts(asr_data["cuts"]).subset(first=2)
    torch.manual_seed(0)
    batch = AsrDataset(Tokenizer(asr_data["bpe_model"]), speed_perturb=True, num_mel_bins=40)[cuts]
    assert batch["feats"].shape[2] == 40


def test_search_methods_reject_misspelt_options():
    from asr.search import SEARCH_METHODS, GreedySearch, ModifiedBeamSearch, build_search

    with pytest.raises(TypeError):
        ModifiedBeamSearch(beam_size=4)  # swallowed by **_ before: beam stayed 8
    with pytest.raises(TypeError):
        GreedySearch(max_sym_per_frames=3)
    with pytest.raises(TypeError, match="max_sym_per_frames"):
        build_search("greedy", max_sym_per_frames=3)
    greedy = build_search("greedy", beam=4, max_sym_per_frame=3)  # beam: not greedy's
    assert isinstance(greedy, SEARCH_METHODS["greedy"]) and greedy.max_sym_per_frame == 3
    assert build_search("modified_beam", beam=4, max_sym_per_frame=3).beam == 4
