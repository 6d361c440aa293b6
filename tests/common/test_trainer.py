"""The training skeleton (common/trainer.py) on a toy regression model: resume (mid-epoch and at
an epoch boundary) gives the weights of an uninterrupted run, the non-finite guard skips and
counts, logs stay unique after a resume, a finished run re-run is a no-op, the exp-dir lock, the
trainer command line."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import common.trainer
from common.checkpoint import load_checkpoint
from common.cli import TrainCli
from common.io import InputError, dir_lock
from common.trainer import (
    LoopOptions,
    MetricsLog,
    StepOutput,
    Trainer,
    find_resume,
    training_session,
    write_command,
)

N, BATCH = 24, 4  # 6 batches per epoch


class ToyTrainer(Trainer):
    """A dropout MLP on fixed random data. Batches come from a DataLoader (whose iterator draws
    from the global torch RNG, like train-asr's) in a per-epoch order; dropout draws from it
    at every step, so an exact resume needs the saved RNG stream."""

    dev_log_fields = ("dev_loss",)
    train_log_fields = ("mse",)

    def __init__(self, exp_dir: Path, opts: LoopOptions, bad_steps: dict[int, str] | None = None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1)
        )
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        super().__init__(model, opt, opts, exp_dir, config=ToyConfig())
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(N, 3, generator=g)
        self.y = self.x.sum(1, keepdim=True) + 0.1 * torch.randn(N, 1, generator=g)
        self.bad_steps = bad_steps or {}  # step -> "loss" / "gradient": make it non-finite
        self.unchanged_at: list[int] = []  # steps after which no parameter moved

    def train_batches(self, epoch: int, skip: int):
        order = list(range(N))
        random.Random(epoch).shuffle(order)
        return DataLoader(
            TensorDataset(self.x, self.y), batch_size=BATCH, sampler=order[skip * BATCH :]
        )

    def train_step(self, batch) -> StepOutput:
        self._before = [p.detach().clone() for p in self.model.parameters()]
        x, y = batch
        pred = self.model(x)
        bad = self.bad_steps.get(self.state.step)
        if bad == "gradient":  # finite loss, infinite gradient
            pred.register_hook(lambda g: g * float("inf"))
        loss = torch.nn.functional.mse_loss(pred, y)
        if bad == "loss":
            loss = loss * float("nan")
        return StepOutput(loss, {"mse": (loss.item(), 1.0)})

    def after_step(self) -> None:
        if all(
            torch.equal(a, b) for a, b in zip(self._before, self.model.parameters(), strict=True)
        ):
            self.unchanged_at.append(self.state.step - 1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float | None]:
        self.model.eval()
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y).item()
        self.model.train()
        return {"dev_loss": loss}

    def select_value(self, metrics):
        return metrics["dev_loss"]


@dataclass
class ToyConfig:
    """Options of the toy trainer's command line (and its config.json)."""

    exp_dir: Path = field(default=Path("exp/toy"), metadata={"help": "output dir"})
    num_epochs: int = field(default=2, metadata={"help": "epochs"})
    max_steps: int = field(default=0, metadata={"help": "step budget (0 = off)"})


@dataclass
class ToyModelConfig:
    hidden: int = field(default=8, metadata={"help": "hidden units"})


def train(exp_dir: Path, bad_steps=None, **opts) -> ToyTrainer:
    opts = {"num_epochs": 2, "log_interval": 1, "grad_clip": 10.0, **opts}
    trainer = ToyTrainer(exp_dir, LoopOptions(**opts), bad_steps)
    with training_session(exp_dir):
        trainer.fit(find_resume(exp_dir))
    return trainer


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {**ckpt["model"], **{f"opt.{k}": v for k, v in _flat(ckpt["optimizer"]["state"])}}


def _flat(state: dict):
    for i, s in state.items():
        for k, v in s.items():
            yield f"{i}.{k}", v


def _assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _steps(path: Path) -> list[int]:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return [int(r["step"]) for r in csv.DictReader(f)]
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("cut_at", "dev_steps"), [(8, [6, 8, 12, 18]), (12, [6, 12, 18])])
def test_resume_mid_epoch_equals_uninterrupted(tmp_path, cut_at, dev_steps):
    full = train(tmp_path / "full", num_epochs=3)
    assert full.state.step == 18 and full.state.stop_reason == "all 3 epochs trained"
    # stopped by --max-steps inside epoch 2 (8) or at its last batch (12), then continued
    cut = train(tmp_path / "cut", num_epochs=3, max_steps=cut_at)
    assert cut.state.partial and cut.state.epoch == 2 and cut.state.batch == cut_at - 6
    ckpt = load_checkpoint(tmp_path / "cut/epoch-2.pt")
    assert ckpt["partial"] and ckpt["step"] == cut_at
    train(tmp_path / "cut", num_epochs=3)
    assert not load_checkpoint(tmp_path / "cut/epoch-2.pt")["partial"]
    _assert_equal(_weights(tmp_path / "cut/epoch-3.pt"), _weights(tmp_path / "full/epoch-3.pt"))
    # the evaluation at a cut inside the epoch is one more dev row; steps stay unique
    assert _steps(tmp_path / "cut/log/valid.csv") == dev_steps
    assert _steps(tmp_path / "cut/log/train.csv") == list(range(1, 19))


def test_resume_at_epoch_boundary_equals_uninterrupted(tmp_path):
    train(tmp_path / "full", num_epochs=3)
    train(tmp_path / "two", num_epochs=2)
    train(tmp_path / "two", num_epochs=3)  # a raised limit continues a finished run
    _assert_equal(_weights(tmp_path / "two/epoch-3.pt"), _weights(tmp_path / "full/epoch-3.pt"))


def test_non_finite_loss_and_gradient_are_skipped_and_counted(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        t = train(tmp_path, num_epochs=1, bad_steps={1: "loss", 3: "gradient"})
    assert t.state.skipped_steps == 2 and t.state.step == 6
    assert t.unchanged_at == [1, 3]  # no optimizer step on either, every other step trained
    assert "step 2: non-finite loss, batch skipped (1 skipped so far)" in caplog.text
    assert "step 4: non-finite gradient, batch skipped (2 skipped so far)" in caplog.text
    ckpt = load_checkpoint(tmp_path / "epoch-1.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert ckpt["train_state"]["skipped_steps"] == 2
    # a skipped batch adds nothing to the averages: no row where it was alone (log interval 1)
    assert _steps(tmp_path / "log/train.csv") == [1, 3, 5, 6]


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_logs_stay_unique_after_resume(tmp_path, suffix, monkeypatch):
    monkeypatch.setattr(ToyTrainer, "train_log_name", f"log/train.{suffix}")
    monkeypatch.setattr(ToyTrainer, "dev_log_name", f"log/dev.{suffix}")
    train(tmp_path)
    logs = tmp_path / f"log/train.{suffix}", tmp_path / f"log/dev.{suffix}"
    full = [_steps(p) for p in logs]
    assert full == [list(range(1, 13)), [6, 12]]
    # killed after epoch 2's rows were written, before epoch-2.pt was in place
    (tmp_path / "epoch-2.pt").unlink()
    train(tmp_path)
    assert [_steps(p) for p in logs] == full


def test_finished_run_rerun_is_a_no_op(tmp_path, caplog):
    train(tmp_path, max_steps=3)
    ckpts = sorted(tmp_path.glob("*.pt"))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ckpts}
    with caplog.at_level(logging.INFO):
        t = train(tmp_path, max_steps=3)
    assert "--max-steps 3 reached (step 3)): nothing to do" in caplog.text
    assert t.state.step == 3
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ckpts} == before
    assert train(tmp_path, max_steps=4).state.step == 4  # a raised budget continues


def test_best_pt_missing_after_a_kill_is_restored(tmp_path, monkeypatch, caplog):
    real = common.trainer.save_checkpoint

    def killed_at_best(path, state):
        if path.name == "best.pt" and state["epoch"] == 2:
            raise KeyboardInterrupt  # stands for SIGKILL
        real(path, state)

    monkeypatch.setattr(common.trainer, "save_checkpoint", killed_at_best)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1  # stale
    with caplog.at_level(logging.INFO):
        t = train(tmp_path)
    assert "completed the missing outputs" in caplog.text
    assert t.state.best_epoch == 2 and load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


@pytest.mark.parametrize("keep", [1, 2])
def test_keep_last_k_deletes_older_epochs_and_resumes_exactly(tmp_path, keep):
    full = tmp_path / "full"
    train(full, num_epochs=4)
    assert sorted(p.name for p in full.glob("epoch-*.pt")) == [
        f"epoch-{i}.pt" for i in (1, 2, 3, 4)
    ]
    kept = tmp_path / "kept"
    train(kept, num_epochs=3, keep_last_k=keep)
    assert sorted(p.name for p in kept.glob("epoch-*.pt")) == [
        f"epoch-{i}.pt" for i in range(4 - keep, 4)
    ]
    assert (kept / "best.pt").is_file()
    train(kept, num_epochs=4, keep_last_k=keep)  # resumes from the newest one kept
    assert sorted(p.name for p in kept.glob("epoch-*.pt")) == [
        f"epoch-{i}.pt" for i in range(5 - keep, 5)
    ]
    _assert_equal(_weights(kept / "epoch-4.pt"), _weights(full / "epoch-4.pt"))
    _assert_equal(_weights(kept / "best.pt"), _weights(full / "best.pt"))


def test_exp_dir_lock(tmp_path):
    with dir_lock(tmp_path, "exp dir"), pytest.raises(InputError, match="in use"):
        train(tmp_path)
    assert not (tmp_path / "log").exists() and not list(tmp_path.glob("*.pt"))


def test_metrics_log_drops_rows_after_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path / "a.csv", ["step", "loss"])
    for s in (1, 2, 3):
        log.write(step=s, loss=0.5)
    log.close()
    MetricsLog(tmp_path / "a.csv", ["step", "loss"], keep_through_step=2).close()
    assert _steps(tmp_path / "a.csv") == [1, 2]
    (tmp_path / "b.csv").write_text("step,loss\nx,1\n")
    with pytest.raises(InputError, match=r"b\.csv:2: step 'x'"):
        MetricsLog(tmp_path / "b.csv", ["step", "loss"], keep_through_step=2)


def test_cmd_sh_records_each_command_once(tmp_path, monkeypatch):
    # the recipe's `logged` line (printf %q) is the same command: not repeated
    monkeypatch.chdir(tmp_path)
    here = f"# Exact commands, run from {os.getcwd()}"
    (tmp_path / "cmd.sh").write_text(f"{here}\ntrain-toy --exp-dir a\\ b --n 1 \n")
    write_command(tmp_path, ["train-toy", "--exp-dir", "a b", "--n", "1"])
    write_command(tmp_path, ["train-toy", "--n", "2"])
    write_command(tmp_path, ["train-toy", "--n", "2"])
    lines = (tmp_path / "cmd.sh").read_text().splitlines()
    assert lines == [here, "train-toy --exp-dir a\\ b --n 1 ", "train-toy --n 2"]
    # run from another folder: a header names it before the command (its paths are relative
    # to it); back in the first folder, a header again
    (tmp_path / "w2").mkdir()
    monkeypatch.chdir(tmp_path / "w2")
    write_command(tmp_path, ["train-toy", "--n", "3"])
    write_command(tmp_path, ["train-toy", "--n", "4"])
    monkeypatch.chdir(tmp_path)
    write_command(tmp_path, ["train-toy", "--n", "5"])
    lines = (tmp_path / "cmd.sh").read_text().splitlines()
    there = f"# Exact commands, run from {os.getcwd()}{os.sep}w2"
    assert lines[3:] == [there, "train-toy --n 3", "train-toy --n 4", here, "train-toy --n 5"]


def test_train_cli_presets_and_errors(tmp_path, capsys):
    presets = {"tiny": (ToyModelConfig(hidden=2), ToyConfig(num_epochs=1))}
    cli = TrainCli(
        "train-toy",
        "Train a toy.\n\nUsage:\n    train-toy --preset tiny",
        ToyConfig,
        ToyModelConfig,
        ("tiny", "default"),
        lambda name, _: presets.get(name, (ToyModelConfig(), ToyConfig())),
    )
    model_cfg, cfg = cli.configs(["--preset", "tiny", "--max-steps", "5"])
    assert (model_cfg.hidden, cfg.num_epochs, cfg.max_steps) == (2, 1, 5)
    seen = {}

    def run(m, c, command):
        seen["command"] = command
        if c.max_steps < 0:
            raise InputError("--max-steps must be >= 0")

    cli.main(run, ["--hidden", "3"])
    assert seen["command"] == ["train-toy", "--hidden", "3"]
    capsys.readouterr()
    for argv in (["--max-steps", "-1"], ["--max-stepz", "1"]):
        with pytest.raises(SystemExit) as e:
            cli.main(run, argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "train-toy: error: " in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "step budget (0 = off) (default: 0)" in out and "model:" in out


@pytest.mark.parametrize("known", [True, False])
def test_progress_bar_total_is_the_epoch_batch_count_when_known(tmp_path, monkeypatch, known):
    bars, tqdm = [], common.trainer.tqdm

    def spy(*args, **kwargs):
        bars.append((kwargs.get("total"), kwargs.get("initial")))
        return tqdm(*args, **kwargs)

    monkeypatch.setattr(common.trainer, "tqdm", spy)
    if known:
        monkeypatch.setattr(ToyTrainer, "batches_per_epoch", lambda self, epoch: N // BATCH)
    train(tmp_path / "exp")
    assert bars == [(N // BATCH if known else None, 0)] * 2


@pytest.mark.parametrize(
    ("field_values", "message"),
    [
        ({"keep_last_k": -1}, "--keep-last-k must be >= 0"),
        ({"max_steps": -1}, "--max-steps and --max-minutes must be >= 0"),
        ({"max_minutes": -0.5}, "--max-steps and --max-minutes must be >= 0"),
    ],
)
def test_every_trainer_config_shares_the_budget_options(field_values, message):
    """train-asr, train-lm and train-token-lm take the budget options (and their check) from
    common.budget.TrainBudget, and hand them to the loop under LoopOptions' names."""
    from asr.config import TrainConfig as AsrTrainConfig
    from asr.train_token_lm import TokenLMTrainConfig
    from common.budget import TrainBudget
    from lm.config import TrainConfig as LmTrainConfig

    loop_fields = {f.name for f in fields(LoopOptions)}
    for cls in (AsrTrainConfig, TokenLMTrainConfig, LmTrainConfig):
        assert issubclass(cls, TrainBudget)
        cfg = cls(keep_last_k=3, max_steps=7, max_minutes=1.5)
        cfg.validate()
        assert cfg.budget_options() == {"max_steps": 7, "max_minutes": 1.5, "keep_last_k": 3}
        assert set(cfg.budget_options()) <= loop_fields
        with pytest.raises(InputError, match=message):
            cls(**field_values).validate()
