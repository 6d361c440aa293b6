"""Training: the tiny preset must learn (overfit ~20 utterances), resume exactly, survive bad
batches, and refuse corrupt or incompatible checkpoints with a clear error."""

from __future__ import annotations

import dataclasses
import gc
import math
import warnings

import pytest
import torch

from asr.objective import TransducerForward, compute_loss
from asr.train import run
from common.checkpoint import CheckpointError, load_checkpoint

from .conftest import tiny_cfg


@pytest.mark.slow
def test_tiny_overfits(trained_tiny):
    last = load_checkpoint(trained_tiny / "epoch-60.pt")
    # learning, not memorising a prior: greedy WER on the training utterances near zero
    assert last["dev_metrics"]["dev_greedy_wer"] <= 10.0, last["dev_metrics"]
    first = load_checkpoint(trained_tiny / "epoch-1.pt")
    assert first["dev_metrics"]["dev_greedy_wer"] >= 80.0
    assert (trained_tiny / "log" / "train.csv").is_file()
    assert (trained_tiny / "config.json").is_file()
    for key in ("model", "optimizer", "scheduler", "sampler", "config", "env", "epoch", "step"):
        assert key in last
    assert "git_sha" in last["env"] and "torch" in last["env"]


def test_resume_equals_uninterrupted(asr_data, tmp_path):
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path / "a", num_epochs=3)
    run(0, 1, model_cfg, cfg)
    full = load_checkpoint(tmp_path / "a" / "epoch-3.pt")["model"]
    # "killed" after epoch 2: train 2 epochs, then rerun the same command with 3 epochs
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path / "b", num_epochs=2)
    run(0, 1, model_cfg, cfg)
    run(0, 1, model_cfg, dataclasses.replace(cfg, num_epochs=3))
    resumed = load_checkpoint(tmp_path / "b" / "epoch-3.pt")
    assert resumed["epoch"] == 3
    for k, v in full.items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=1e-5, atol=1e-6)


def test_corrupt_and_incompatible_checkpoints(asr_data, tmp_path):
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=1, max_steps=1)
    run(0, 1, model_cfg, cfg)
    bigger = dataclasses.replace(model_cfg, encoder_dim=32)
    with pytest.raises(CheckpointError, match="model config"):
        run(0, 1, bigger, dataclasses.replace(cfg, num_epochs=2))
    (tmp_path / "epoch-1.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="epoch-1.pt"):
        run(0, 1, model_cfg, dataclasses.replace(cfg, num_epochs=2))


def test_bad_batches_are_masked_and_skipped(asr_data):
    from asr.model import build_model

    model_cfg, cfg = tiny_cfg(asr_data, "unused")
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(model_cfg, vocab_size=40))
    fwd = TransducerForward(model)
    feats = torch.randn(3, 60, 80)
    batch = {
        "feats": feats,
        "feat_lens": torch.tensor([60, 60, 9]),  # utt 2: 1 encoder frame for 5 labels
        "targets": torch.tensor([[5, 6, 7, 8, 9], [0, 0, 0, 0, 0], [5, 6, 7, 8, 9]]),
        "target_lens": torch.tensor([5, 0, 5]),  # utt 1: empty label sequence
    }
    loss, st = compute_loss(fwd, batch, cfg, torch.device("cpu"))
    assert math.isfinite(loss.item()) and st["bad_utts"] == 2 and st["utts"] == 1
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # a NaN input poisons nothing: the utterance is masked
    batch["feats"] = feats.clone()
    batch["feats"][0, 3, 3] = float("nan")
    model.zero_grad()
    loss, st = compute_loss(fwd, batch, cfg, torch.device("cpu"))
    assert math.isfinite(loss.item())


def test_speed_perturbation_recomputes_fbank(asr_data):
    from asr.data import AsrDataset, Tokenizer, load_cuts

    cuts = load_cuts(asr_data["cuts"]).subset(first=4)
    torch.manual_seed(0)
    import random

    random.seed(0)
    plain = AsrDataset(Tokenizer(asr_data["bpe_model"]))[cuts]
    pert = AsrDataset(Tokenizer(asr_data["bpe_model"]), speed_perturb=True)[cuts]
    assert pert["feats"].shape[0] == 4 and pert["feats"].shape[2] == 80
    assert pert["texts"] == plain["texts"]
    assert torch.isfinite(pert["feats"]).all()


def test_monitor_cuts_logged_at_every_dev_check(asr_data, tmp_path):
    import csv

    # the dev cuts again under another name: the monitored WER must equal the dev WER
    model_cfg, cfg = tiny_cfg(
        asr_data,
        tmp_path,
        num_epochs=1,
        max_steps=2,
        valid_interval=1,
        monitor_cuts=(f"again={asr_data['cuts']}",),
    )
    run(0, 1, model_cfg, cfg)
    with open(tmp_path / "log" / "monitor.csv", newline="") as f:
        mon = list(csv.DictReader(f))
    with open(tmp_path / "log" / "valid.csv", newline="") as f:
        dev = {r["step"]: r for r in csv.DictReader(f)}
    assert [(r["step"], r["set"]) for r in mon] == [("1", "again"), ("2", "again")]
    for r in mon:
        assert float(r["greedy_wer"]) == pytest.approx(float(dev[r["step"]]["dev_greedy_wer"]))
    # no check every N steps: the epoch ends are monitored, once each
    model_cfg, cfg = tiny_cfg(
        asr_data,
        tmp_path / "b",
        num_epochs=2,
        valid_interval=0,
        monitor_cuts=(f"again={asr_data['cuts']}",),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run(0, 1, model_cfg, cfg)
        gc.collect()
    # every log is closed when training ends, not left to the garbage collector
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    with open(tmp_path / "b" / "log" / "monitor.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]


def test_monitor_cuts_bad_items():
    from asr.train import parse_monitor_cuts
    from common.io import InputError

    assert [(n, str(p)) for n, p in parse_monitor_cuts(("a=x.jsonl.gz", " b = y "))] == [
        ("a", "x.jsonl.gz"),
        ("b", "y"),
    ]
    for bad in (("x.jsonl.gz",), ("=x",), ("a=",)):
        with pytest.raises(InputError, match="NAME=CUTS"):
            parse_monitor_cuts(bad)
    with pytest.raises(InputError, match="twice"):
        parse_monitor_cuts(("a=x", "a=y"))


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_cpu_bf16_autocasts_the_training_steps_only(asr_data, tmp_path, monkeypatch, cpu_bf16):
    import asr.train as train_mod

    seen = []

    def recording(model, batch, cfg, device):
        loss, st = compute_loss(model, batch, cfg, device)
        seen.append((torch.is_autocast_enabled("cpu"), loss.dtype))
        return loss, st

    monkeypatch.setattr(train_mod, "compute_loss", recording)
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=1, max_steps=3, cpu_bf16=cpu_bf16)
    run(0, 1, model_cfg, cfg)
    assert seen == [(cpu_bf16, torch.float32)] * 3  # the loss itself stays fp32
    state = load_checkpoint(tmp_path / "epoch-1.pt")["model"]
    assert all(v.dtype != torch.bfloat16 for v in state.values())  # fp32 weights either way
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_progress_bar_total_is_the_epochs_batch_count(asr_data, tmp_path, capfd):
    """The bar's total is counted on a copy of the epoch's sampler: it equals the batches the
    epoch trains, and counting changes nothing (same weights as the resume test's run)."""
    import re

    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=2, max_duration=4.0)
    run(0, 1, model_cfg, cfg)
    err = capfd.readouterr().err
    steps = [load_checkpoint(tmp_path / f"epoch-{e}.pt")["step"] for e in (1, 2)]
    for epoch, n in ((1, steps[0]), (2, steps[1] - steps[0])):
        bars = re.findall(rf"epoch {epoch}: +\d+%\S* (\d+)/(\d+) ", err)
        assert bars and bars[-1] == (str(n), str(n)), (epoch, n, bars)


def test_noam_factor_cools_down_to_zero_at_max_steps():
    from asr.train import noam_factor

    w = 4
    assert noam_factor(0, w) == pytest.approx(1 / 4)  # warm-up
    assert noam_factor(3, w) == pytest.approx(1.0)  # the peak
    assert noam_factor(15, w) == pytest.approx(math.sqrt(4 / 16))  # inverse-sqrt decay
    # --lr-cooldown-steps 4 with --max-steps 20: steps 0-16 as without, then 3/4, 2/4, 1/4 of it
    for s in range(17):
        assert noam_factor(s, w, 20, 4) == noam_factor(s, w)
    for s, frac in ((17, 3 / 4), (18, 2 / 4), (19, 1 / 4), (20, 0.0), (25, 0.0)):
        assert noam_factor(s, w, 20, 4) == pytest.approx(frac * noam_factor(s, w)), s


def test_lr_cooldown_options_are_checked():
    from asr.config import get_train_preset
    from common.io import InputError

    cfg = get_train_preset("default")
    dataclasses.replace(cfg, max_steps=100, lr_cooldown_steps=100).validate()
    for bad in (
        dataclasses.replace(cfg, max_steps=0, lr_cooldown_steps=10),
        dataclasses.replace(cfg, max_steps=5, lr_cooldown_steps=10),
        dataclasses.replace(cfg, max_steps=5, lr_cooldown_steps=-1),
    ):
        with pytest.raises(InputError, match="--lr-cooldown-steps"):
            bad.validate()


def test_cooldown_lr_and_resume_from_a_run_without_it(asr_data, tmp_path):
    """The logged LR follows noam_factor with the cool-down down to 0 at --max-steps, and a run
    stopped before the cool-down without it (the session-41 experiment resumed the recipe's
    checkpoints so) continues into the same weights as one with it from the start."""
    from asr.train import noam_factor

    kw = dict(num_epochs=50, log_interval=1)
    model_cfg, cfg = tiny_cfg(asr_data, tmp_path / "a", max_steps=12, lr_cooldown_steps=6, **kw)
    run(0, 1, model_cfg, cfg)
    rows = (tmp_path / "a" / "log" / "train.csv").read_text().splitlines()[1:]
    lrs = {int(r.split(",")[0]): float(r.split(",")[2]) for r in rows}
    assert sorted(lrs) == list(range(1, 13))
    for step, lr in lrs.items():  # logged after the step: the LR of the next one
        want = cfg.peak_lr * noam_factor(step, cfg.warmup_steps, 12, 6)
        assert lr == pytest.approx(want, rel=1e-5, abs=1e-12), step
    assert lrs[12] == 0.0 and lrs[11] < lrs[8]
    full = load_checkpoint(sorted((tmp_path / "a").glob("epoch-*.pt"))[-1])

    model_cfg, cfg = tiny_cfg(asr_data, tmp_path / "b", max_steps=6, **kw)
    run(0, 1, model_cfg, cfg)
    run(0, 1, model_cfg, dataclasses.replace(cfg, max_steps=12, lr_cooldown_steps=6))
    resumed = load_checkpoint(sorted((tmp_path / "b").glob("epoch-*.pt"))[-1])
    assert resumed["step"] == full["step"] == 12
    for k, v in full["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=1e-5, atol=1e-6)
