"""Re-running ``train-lm`` after a kill: "finished" means every output exists (best.pt, dev
metrics, task weights, summary), a resumed run keeps one dev-metrics row per epoch, and the
schedulers reject misspelt options."""

import json
import logging

import pytest
import torch

import common.trainer
from common.checkpoint import load_checkpoint
from lm.schedulers import FixedScheduler, LinearScheduler, build_scheduler
from lm.train import run
from tests.lm.conftest import tiny_configs


def _versions(exp) -> dict:
    """Identity of each output's content: an atomic rewrite gives a new inode (and mtime)."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in exp.iterdir()
        if p.is_file() and p.name != ".lock"  # the lock file records each run's pid
    }


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs, no handler catches it."""


def _kill_when_writing_best_pt(monkeypatch, epoch: int) -> dict:
    real = common.trainer.save_checkpoint
    fired = {}

    def save(path, state):
        if path.name == "best.pt" and state["epoch"] == epoch:
            fired["epoch"] = epoch
            raise Killed
        real(path, state)

    monkeypatch.setattr(common.trainer, "save_checkpoint", save)
    return fired


@pytest.mark.parametrize("epochs", [1, 2])
def test_killed_between_epoch_checkpoint_and_best_pt(lm_data, monkeypatch, caplog, epochs):
    """epochs=1: no best.pt at all; epochs=2: a stale best.pt of epoch 1."""
    model_cfg, cfg = tiny_configs(lm_data, "pretrain", f"killed{epochs}", epochs=epochs)
    exp = cfg.exp_dir
    fired = _kill_when_writing_best_pt(monkeypatch, epochs)
    with pytest.raises(Killed):
        run(model_cfg, cfg)
    assert fired == {"epoch": epochs}
    assert (exp / f"epoch-{epochs}.pt").is_file()
    assert load_checkpoint(exp / f"epoch-{epochs}.pt")["train_state"]["stop_reason"]
    monkeypatch.undo()

    with caplog.at_level(logging.INFO):
        summary = run(model_cfg, cfg)
    assert "nothing to do" not in caplog.text  # before the fix: "...finished: nothing to do"
    assert "completed the missing outputs" in caplog.text
    best, last = load_checkpoint(exp / "best.pt"), load_checkpoint(exp / f"epoch-{epochs}.pt")
    assert best["epoch"] == summary["best_epoch"] == epochs
    for k, v in last["model"].items():
        assert torch.equal(best["model"][k], v)
    rows = [json.loads(x) for x in (exp / "dev_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert (exp / "task_weights.tsv").is_file() and (exp / "summary.json").is_file()

    # the third run has nothing left to do and rewrites nothing
    before = _versions(exp)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run(model_cfg, cfg) == summary
    assert "nothing to do" in caplog.text
    assert _versions(exp) == before


def test_resume_keeps_one_dev_metrics_row_per_epoch(lm_data):
    model_cfg, cfg = tiny_configs(lm_data, "pretrain", "rows", epochs=2)
    run(model_cfg, cfg)
    exp = cfg.exp_dir
    (exp / "epoch-2.pt").unlink()  # killed before epoch 2's checkpoint was in place
    summary = run(model_cfg, cfg)
    rows = [json.loads(x) for x in (exp / "dev_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and summary["epochs_run"] == 2


def test_schedulers_reject_misspelt_options():
    with pytest.raises(TypeError):
        FixedScheduler((1, 0, 0), ramp_steps=10)  # swallowed by **_ before
    with pytest.raises(TypeError):
        LinearScheduler((1, 1, 1), ramp_step=10)
    with pytest.raises(TypeError, match="ramp_step"):
        build_scheduler("linear", (1, 1, 1), ramp_step=10)
    # one shared option set: each scheduler takes its own options
    s = build_scheduler("linear", (1, 1, 1), ramp_steps=10, eps=0.3, seed=1)
    assert isinstance(s, LinearScheduler) and s.ramp_steps == 10
