"""The training skeleton shared by ``train-asr`` and ``train-lm``: typed state, resume, budgets, logs.

Part of ``common``, the lowest layer of the toolkit: it imports torch, tqdm, the standard library
and ``common.*`` only. A model package subclasses :class:`Trainer` and writes only what is its own
(the batches of an epoch, the loss of a batch, the dev evaluation, extra checkpoint entries); the
skeleton owns the rest, identical for every model:

* :class:`TrainState` (epoch, step, batch of a partial epoch, skipped steps, wall time of every
  run so far, best dev value), saved in every ``epoch-N.pt`` with the model, optimizer and RNGs;
* resume from the last ``epoch-N.pt`` (:func:`find_resume`), a *partial* one included: the
  epoch continues at the same batch with the saved RNG stream (evaluation never moves it), so
  a run stopped by a budget and continued ends with the same weights as one never stopped -
  unless the extra evaluation at the stop changed a decision training reads (it counts for
  ``best.pt`` and early stopping like an epoch end);
* budgets ``num_epochs`` / ``max_steps`` / ``max_minutes`` (earlier runs count; the trainers'
  configs take the last two and ``keep_last_k`` from :class:`common.budget.TrainBudget`) and early
  stopping (``patience``), all re-derived from the state, so re-running a finished run is a
  no-op ("Training already finished ...: nothing to do") and raising a limit continues it;
* the non-finite guard: a batch whose loss or gradient norm is not finite is skipped (no
  optimizer step) and counted, and every DDP rank takes the same decision;
* train / dev rows in ``CSV`` or ``JSON lines`` (:class:`MetricsLog`); on resume, rows written
  after the resumed checkpoint (by a run killed before its next one) are dropped, so steps stay
  unique and increasing;
* ``epoch-N.pt`` and ``best.pt`` (lowest :meth:`Trainer.select_value`), restored on resume if a
  killed run did not write it; ``keep_last_k`` > 0 deletes the ``epoch-N.pt`` older than the
  last k once ``best.pt`` is in place (icefall's ``--keep-last-k``; 0 keeps every one);
  ``config.json`` (:func:`common.cli.save_config`); ``cmd.sh``; the exp-dir lock
  (:func:`common.io.dir_lock`) and the log file (:func:`training_session`).

The trainers' command line (two typed configs, presets per mode) is :class:`common.cli.TrainCli`,
next to :func:`common.cli.run_cli` and built from the same pieces.

The module is longer than our ~400-line mark because these rules are one contract (a resume is
only exact if state, RNG, logs and checkpoints agree) that each trainer would otherwise restate.

Usage:
    class MyTrainer(Trainer):
        def train_batches(self, epoch, skip): ...     # iterable of batches, first `skip` left out
        def train_step(self, batch): ...             # -> StepOutput(loss, stats)
        def evaluate(self): ...                      # -> {"dev_loss": 1.23, ...}

    with training_session(exp_dir):
        resume = find_resume(exp_dir)
        MyTrainer(model, optimizer, LoopOptions(num_epochs=3), exp_dir, config=cfg).fit(resume)
"""

from __future__ import annotations

import abc
import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import random
import shlex
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from common.checkpoint import (
    CheckpointError,
    epoch_checkpoints,
    find_last_checkpoint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from common.cli import (
    CMD_HEADER,
    LOG_FORMAT,
    save_config,
)
from common.io import InputError, atomic_path, atomic_write, dir_lock, read_jsonl


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as JSON-able primitives (paths as strings, tuples as lists), the form
    stored in checkpoints and compared on resume."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


@dataclass
class LoopOptions:
    """What the skeleton needs of a trainer's config (each package maps its own option names)."""

    num_epochs: int
    max_steps: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # 0 = no limit
    grad_clip: float = 5.0
    log_interval: int = 20
    patience: int = 0  # evaluations without improvement before stopping; 0 = off
    keep_last_k: int = 0  # epoch-N.pt files kept (the newest); 0 = keep all


@dataclass
class TrainState:
    """Where training stands; saved as ``train_state`` in every checkpoint.

    ``epoch`` is the epoch trained last (``epoch-N.pt`` holds N); ``partial`` means a budget
    cut it short after ``batch`` of its batches, and a resumed run continues it there.
    """

    epoch: int = 0
    batch: int = 0
    partial: bool = False
    step: int = 0  # batches trained in all (skipped ones included)
    skipped_steps: int = 0  # batches skipped for a non-finite loss or gradient
    elapsed_s: float = 0.0  # training wall time up to the last checkpoint, earlier runs included
    best_value: float = math.inf  # lowest select_value() so far
    best_epoch: int = 0
    best_step: int = 0
    best_metrics: dict[str, float | None] = field(default_factory=dict)
    bad_evals: int = 0  # evaluations in a row without a new best
    stop_reason: str = ""  # why the run that wrote this state stopped; "" = it went on

    @property
    def epochs_done(self) -> int:
        return self.epoch - 1 if self.partial else self.epoch


@dataclass
class StepOutput:
    """What :meth:`Trainer.train_step` returns: the loss to back-propagate and the statistics
    to log, each as ``(sum, count)`` so the logged value is ``sum / count`` over the interval."""

    loss: torch.Tensor
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Resume:
    """The checkpoint a run continues from (:func:`find_resume`)."""

    path: Path
    ckpt: dict[str, Any]


def find_resume(exp_dir: Path, allowed: bool = True) -> Resume | None:
    """The last complete ``epoch-N.pt`` in ``exp_dir``, loaded (atomic saves: every file is whole).

    Raises:
        CheckpointError: naming the file if it is corrupt, or if one exists but ``allowed`` is
            False (``--resume false``).
    """
    last = find_last_checkpoint(exp_dir)
    if last is None:
        return None
    if not allowed:
        raise CheckpointError(f"{last} exists and --resume is false; use a new --exp-dir")
    return Resume(last, load_checkpoint(last))


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, Python's ``random``)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """Append-only log of rows with a ``step``: CSV (``.csv``, header written once) or JSON lines
    (any other suffix). Each row is flushed, so a killed run keeps its log.

    ``keep_through_step``: rows with a larger ``step`` were written by a run killed after its last
    checkpoint (at that step); they are dropped (the file is rewritten atomically) so the
    resumed run's rows do not repeat their steps.
    """

    def __init__(
        self, path: Path, fields: Sequence[str] | None = None, keep_through_step: int | None = None
    ) -> None:
        self.path = path
        self.csv = path.suffix == ".csv"
        if self.csv and not fields:
            raise ValueError(f"{path}: a CSV log needs its field names")
        self.fields = list(fields or [])
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_through_step is not None and path.is_file():
            self._truncate(keep_through_step)
        new = not path.is_file()
        self.f = open(path, "a", newline="" if self.csv else None, encoding="utf-8")
        self.writer = csv.DictWriter(self.f, fieldnames=self.fields) if self.csv else None
        if self.writer is not None and new:
            self.writer.writeheader()

    def _rows(self) -> list[tuple[int, dict]]:
        if not self.csv:
            return list(read_jsonl(self.path))
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(enumerate(csv.DictReader(f), start=2))

    def _truncate(self, step: int) -> None:
        rows = self._rows()
        kept = []
        for lineno, row in rows:
            try:
                if int(row.get("step") or 0) <= step:
                    kept.append(row)
            except (TypeError, ValueError):
                raise InputError(
                    f"{self.path}:{lineno}: step {row.get('step')!r} is not an integer"
                ) from None
        if len(kept) == len(rows):
            return
        logging.warning(
            "%s: dropped %d row(s) after step %d (written after the last checkpoint)",
            self.path,
            len(rows) - len(kept),
            step,
        )
        with atomic_write(self.path) as f:
            if self.csv:
                w = csv.DictWriter(
                    f, fieldnames=self.fields, extrasaction="ignore", lineterminator="\r\n"
                )
                w.writeheader()
                w.writerows(kept)
            else:
                f.writelines(json.dumps(r) + "\n" for r in kept)

    def write(self, **row: Any) -> None:
        if self.writer is not None:
            self.writer.writerow({k: _csv_value(row.get(k, "")) for k in self.fields})
        else:
            self.f.write(json.dumps(row) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds it (so a re-run with nothing
    to do touches no file); True if written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeError):
        pass
    with atomic_write(path) as f:
        f.write(text)
    return True


def _csv_value(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)


def write_command(exp_dir: Path, command: Sequence[str]) -> None:
    """Append ``command`` to ``exp_dir/cmd.sh`` (ESPnet style) unless a line of it already runs
    exactly that command (a re-run, or the recipe's own ``logged`` line). A ``# Exact commands,
    run from <cwd>`` line comes first, and again before a command run from another folder than
    the last such line names (relative paths in the commands are relative to it)."""
    path = exp_dir / "cmd.sh"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        with contextlib.suppress(ValueError):
            if not line.startswith("#") and shlex.split(line) == list(command):
                return
    here = f"{CMD_HEADER}{os.getcwd()}"
    last = next((x for x in reversed(lines) if x.startswith(CMD_HEADER)), None)
    header = [] if last == here else [here]
    with atomic_write(path) as f:
        f.write("".join(x + "\n" for x in [*lines, *header, shlex.join(command)]))


@contextlib.contextmanager
def training_session(exp_dir: Path, rank: int = 0, world_size: int = 1) -> Iterator[None]:
    """Hold the exp-dir lock (rank 0) and log to ``exp_dir/log/log-train.txt`` (one file per
    rank under DDP) for the block.

    The lock is taken before anything is written, so a second trainer on the same exp dir stops
    at once with an :class:`InputError` naming the folder and the pid holding it.
    """
    lock = dir_lock(exp_dir, "exp dir") if rank == 0 else contextlib.nullcontext()
    name = f"log-train-rank{rank}.txt" if world_size > 1 else "log-train.txt"
    with lock, log_to(exp_dir / "log" / name):
        yield


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Also send the root logger's records to ``path`` (appended) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


class Trainer(abc.ABC):
    """The training loop; a subclass supplies the model-specific parts (see the module doc).

    Args:
        model: the module whose parameters are clipped and whose ``state_dict`` is saved (not a
            DDP wrapper; :meth:`train_step` may run its forward through one).
        optimizer: optimizes ``model``'s parameters.
        opts: epochs, budgets, clipping, logging interval, patience.
        exp_dir: checkpoints, logs, ``config.json`` and ``cmd.sh`` go here.
        config: the training config, saved to ``config.json`` with ``config_extra``.
        command: the command line (``[prog, *argv]``) for ``cmd.sh``; None = not written.
        rank / world_size: DDP rank and size; rank 0 evaluates, logs and saves.
    """

    #: logs: a ``.csv`` name needs the fields; other suffixes are JSON lines
    train_log_name = "log/train.csv"
    dev_log_name = "log/valid.csv"
    train_log_fields: tuple[str, ...] = ()
    dev_log_fields: tuple[str, ...] = ()

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        opts: LoopOptions,
        exp_dir: Path,
        *,
        config: Any,
        config_extra: dict[str, Any] | None = None,
        command: Sequence[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.model, self.optimizer, self.opts = model, optimizer, opts
        self.exp_dir = Path(exp_dir)
        self.config, self.config_extra = config, config_extra or {}
        self.command = list(command) if command is not None else None
        self.rank, self.world_size = rank, world_size
        self.state = TrainState()
        self.train_log: MetricsLog | None = None
        self.dev_log: MetricsLog | None = None
        self.extra_logs: list[MetricsLog] = []  # a subclass's own logs, closed with these
        self._pending_rng: dict[str, Any] | None = None
        self._t0 = time.time()

    # -- model-specific parts ------------------------------------------------------------------

    @abc.abstractmethod
    def train_batches(self, epoch: int, skip: int) -> Iterable[Any]:
        """The batches of ``epoch`` (same order on every call), without the first ``skip``."""

    def batches_per_epoch(self, epoch: int) -> int | None:
        """Number of batches of ``epoch`` when known in advance (the progress bar's total)."""
        return None

    @abc.abstractmethod
    def train_step(self, batch: Any) -> StepOutput:
        """Forward one batch and return its loss (the skeleton does backward and the update)."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float | None]:
        """Dev metrics (rank 0 only); called at each epoch end and at a budget stop."""

    def select_value(self, metrics: dict[str, float | None]) -> float | None:
        """The value to minimise for ``best.pt`` and early stopping; None = no best tracking."""
        return None

    def prepare(self, resumed: bool) -> None:
        """Called once training will happen (not on a finished re-run): load data, move to device."""
        return None  # a hook: nothing by default

    def start_epoch(self, epoch: int) -> None:
        """Called before the first batch of a new (not a continued partial) epoch."""
        return None  # a hook: nothing by default

    def after_step(self) -> None:
        """Called after every batch, skipped ones included (per-step LR schedule, dev checks)."""
        return None  # a hook: nothing by default

    def state_extra(self) -> dict[str, Any]:
        """Model-specific checkpoint entries (config, schedulers, tokenizer...)."""
        return {}

    def load_state_extra(self, ckpt: dict[str, Any]) -> None:
        """Restore what :meth:`state_extra` saved (errors become a :class:`CheckpointError`)."""
        return None  # a hook: nothing by default

    def write_outputs(self) -> list[str]:
        """(Re)write outputs derived from the state after each checkpoint and on resume; returns
        the names that had to be written."""
        return []

    def on_end(self) -> None:
        """Called on every rank when :meth:`fit` ends (also on a finished re-run)."""
        return None  # a hook: nothing by default

    def _finish(self) -> None:
        self.on_end()
        if self.world_size > 1:
            check_ranks_in_sync(self.model, self.exp_dir, self.rank, self.world_size)

    # -- the loop ------------------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def elapsed(self) -> float:
        """Training wall seconds, earlier (resumed) runs included."""
        return self.state.elapsed_s + time.time() - self._t0

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def finished_reason(self) -> str | None:
        """Why the state has nothing left to train under the options; None if it has."""
        st, o = self.state, self.opts
        elapsed_s = st.elapsed_s
        if st.epochs_done >= o.num_epochs:
            return f"all {o.num_epochs} epochs trained"
        if o.max_steps and st.step >= o.max_steps:
            return f"--max-steps {o.max_steps} reached (step {st.step})"
        if o.max_minutes and elapsed_s >= 60 * o.max_minutes:
            return f"--max-minutes {o.max_minutes:g} used ({elapsed_s / 60:.1f} min trained)"
        if o.patience and st.bad_evals >= o.patience:
            return f"early stopping ({o.patience} evaluations without improvement)"
        return None

    def fit(self, resume: Resume | None) -> Path | None:
        """Train from scratch or from ``resume`` until a budget ends; returns the last checkpoint.

        Raises:
            CheckpointError: naming ``resume.path`` if it cannot restore this trainer.
        """
        last = None
        if resume is not None:
            self._restore(resume)
            last = resume.path
            completed = self._complete_outputs() if self.is_main else []
            if completed:
                logging.warning(
                    "%s: completed outputs a killed run had not written: %s",
                    self.exp_dir,
                    completed,
                )
            done = self.finished_reason()
            if done is not None:
                if self.is_main and not (self.exp_dir / "config.json").is_file():
                    self._save_config()
                logging.info(
                    "Training already finished (%s, %s): %s",
                    last,
                    done,
                    "completed the missing outputs" if completed else "nothing to do",
                )
                self._finish()
                return last
        self.prepare(resumed=resume is not None)
        if self.is_main:
            self._save_config()
            # rows after the resumed step were written by a killed run: dropped
            train_fields = [*self.train_log_fields, "grad_norm", "skipped"]
            self.train_log, self.dev_log = (
                MetricsLog(
                    self.exp_dir / name,
                    ["step", "epoch", "lr", *fields, "elapsed_s"],
                    keep_through_step=self.state.step,
                )
                for name, fields in (
                    (self.train_log_name, train_fields),
                    (self.dev_log_name, self.dev_log_fields),
                )
            )
        self._t0 = time.time()
        try:
            while self.finished_reason() is None:  # elapsed_s is updated at each checkpoint
                last = self._run_epoch()
        finally:
            for log in (self.train_log, self.dev_log, *self.extra_logs):
                if log is not None:
                    log.close()
        st = self.state
        logging.info(
            "done (%s): %d steps, %.1f min, %d skipped steps",
            st.stop_reason,
            st.step,
            self.elapsed() / 60,
            st.skipped_steps,
        )
        self._finish()
        return last

    def _run_epoch(self) -> Path:
        """Train one epoch (or the rest of a partial one), evaluate, save; returns the checkpoint."""
        st = self.state
        if not st.partial:
            st.epoch, st.batch = st.epoch + 1, 0
            if self._pending_rng is not None:  # the stream an uninterrupted run would have
                set_rng_state(self._pending_rng)
                self._pending_rng = None
            self.start_epoch(st.epoch)
        batches = iter(self.train_batches(st.epoch, st.batch))
        if self._pending_rng is not None:  # after the iterator's own draws (DataLoader seeds)
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        self.model.train()
        continued, start = st.partial, st.batch
        st.partial = not self._train_batches(batches)
        # a budget that ended exactly at the epoch's last batch left nothing to train: the
        # evaluation at the stop already stands for the epoch end (no second row, same best)
        return self._end_epoch(again=continued and st.batch == start)

    def _train_batches(self, batches: Iterator[Any]) -> bool:
        """Returns False if a budget stopped the epoch before its end."""
        st = self.state
        sums: dict[str, list[float]] = {}
        bar = tqdm(
            batches, desc=f"epoch {st.epoch}", initial=st.batch, disable=not self.is_main,
            mininterval=5, unit="batch", total=self.batches_per_epoch(st.epoch),
        )  # fmt: skip
        for batch in bar:
            out = self.train_step(batch)
            grad_norm = self._update(out)
            st.batch += 1
            st.step += 1
            self.after_step()
            if not math.isnan(grad_norm):
                for k, (s, n) in out.stats.items():
                    acc = sums.setdefault(k, [0.0, 0.0])
                    acc[0] += s
                    acc[1] += n
            if st.step % self.opts.log_interval == 0:
                means = {k: s / n for k, (s, n) in sums.items() if n}
                if means and self.is_main:
                    self._log_train(means, grad_norm)
                sums = {}
            if self._budget_spent():
                return False
        return True

    def _update(self, out: StepOutput) -> float:
        """Backward, clip, and step unless the loss or gradient is not finite; returns the grad
        norm (NaN for a skipped batch)."""
        self.optimizer.zero_grad(set_to_none=True)
        if out.loss.requires_grad:
            out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        bad = torch.stack([~torch.isfinite(out.loss.detach()), ~torch.isfinite(grad_norm)])
        if self.world_size > 1:  # gradients are all-reduced, the loss is not
            bad = bad.float()
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bad.any():
            self.optimizer.step()
            return float(grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.state.skipped_steps += 1
        logging.warning(
            "epoch %d step %d: non-finite %s, batch skipped (%d skipped so far)",
            self.state.epoch,
            self.state.step + 1,  # the step this batch would have been
            "loss" if bad[0] else "gradient",
            self.state.skipped_steps,
        )
        return math.nan

    def _budget_spent(self) -> bool:
        o, st = self.opts, self.state
        if o.max_steps and st.step >= o.max_steps:
            return True
        if not o.max_minutes:
            return False
        device = next(self.model.parameters()).device  # NCCL broadcasts CUDA tensors only
        up = torch.tensor(float(self.elapsed() >= 60 * o.max_minutes), device=device)
        if self.world_size > 1:  # rank 0's clock decides, so every rank stops at the same step
            dist.broadcast(up, src=0)
        if up:
            logging.info("time budget of %g min reached at step %d", o.max_minutes, st.step)
        return bool(up)

    def _log_train(self, means: dict[str, float], grad_norm: float) -> None:
        st = self.state
        assert self.train_log is not None
        text = " ".join(f"{k} {v:.4f}" for k, v in means.items())
        logging.info(
            "epoch %d step %d: %s, lr %.2e, grad-norm %.2f, %.0f s",
            st.epoch,
            st.step,
            text,
            self.lr(),
            grad_norm,
            self.elapsed(),
        )
        self.train_log.write(
            step=st.step,
            epoch=st.epoch,
            lr=self.lr(),
            **means,
            grad_norm=grad_norm,
            skipped=st.skipped_steps,
            elapsed_s=round(self.elapsed(), 1),
        )

    def _end_epoch(self, again: bool = False) -> Path:
        """Evaluate (rank 0), track the best, save ``epoch-N.pt`` (and ``best.pt``); ``again``:
        the weights were evaluated at this step already (only :meth:`evaluate` runs)."""
        st = self.state
        path = self.exp_dir / f"epoch-{st.epoch}.pt"
        if self.is_main:
            # evaluation must not move the training RNG stream (DataLoader iterators draw from
            # it): a run stopped here and resumed goes on as if it had never stopped
            rng = rng_state()
            metrics = self.evaluate()
            set_rng_state(rng)
            value = None if again else self.select_value(metrics)
            improved = value is not None and value < st.best_value
            if improved:
                st.best_value, st.best_epoch, st.best_step = value, st.epoch, st.step
                st.best_metrics, st.bad_evals = dict(metrics), 0
            elif value is not None:
                st.bad_evals += 1
            st.elapsed_s, self._t0 = self.elapsed(), time.time()
            st.stop_reason = self.finished_reason() or ""
            logging.info(
                "epoch %d%s step %d dev: %s%s, %.0f s",
                st.epoch,
                " (partial)" if st.partial else "",
                st.step,
                ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None),
                ""
                if value is None
                else (" (best)" if improved else f" (no improvement x{st.bad_evals})"),
                st.elapsed_s,
            )
            assert self.dev_log is not None
            # the dev row goes first: a run killed before the checkpoint is in place drops it
            if not again:
                self.dev_log.write(
                    step=st.step,
                    epoch=st.epoch,
                    lr=self.lr(),
                    **metrics,
                    elapsed_s=round(st.elapsed_s, 1),
                )
            ckpt = {
                **self.state_extra(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "train_state": dataclasses.asdict(st),
                "rng": rng_state(),
                "epoch": st.epoch,
                "step": st.step,
                "partial": st.partial,
                "dev_metrics": metrics,
            }
            # epoch-N.pt first: a run killed before best.pt is written restores it on resume
            save_checkpoint(path, ckpt)
            if improved:
                save_checkpoint(self.exp_dir / "best.pt", ckpt)
            self._prune_checkpoints()
            self.write_outputs()
        else:
            st.elapsed_s, self._t0 = self.elapsed(), time.time()
            st.stop_reason = self.finished_reason() or ""
        if self.world_size > 1:
            dist.barrier()
        return path

    def _prune_checkpoints(self) -> None:
        """Delete ``epoch-N.pt`` for N <= epoch - keep_last_k (after ``best.pt`` is written, so
        a run killed here resumes from the newest one and finds ``best.pt`` whole)."""
        k = self.opts.keep_last_k
        if k <= 0:
            return
        for n, path in epoch_checkpoints(self.exp_dir).items():
            if n <= self.state.epoch - k:
                path.unlink(missing_ok=True)
                logging.debug("removed %s (--keep-last-k %d)", path, k)

    def _restore(self, resume: Resume) -> None:
        ckpt = resume.ckpt
        load_model_state(self.model, ckpt, resume.path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.state = TrainState(**ckpt["train_state"])
            self._pending_rng = ckpt["rng"]
            self.load_state_extra(ckpt)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{resume.path}: cannot restore the training state ({type(e).__name__}: {e})"
            ) from None
        st = self.state
        logging.info(
            "resumed from %s (%s epoch %d, step %d)",
            resume.path,
            "partial" if st.partial else "complete",
            st.epoch,
            st.step,
        )

    def _complete_outputs(self) -> list[str]:
        """Make the outputs that follow ``epoch-N.pt`` agree with the resumed state: ``best.pt``
        (copied from the best epoch's checkpoint) and :meth:`write_outputs`."""
        st, written = self.state, []
        best = self.exp_dir / "best.pt"
        if st.best_epoch and _epoch_and_step(best) != (st.best_epoch, st.best_step):
            src = self.exp_dir / f"epoch-{st.best_epoch}.pt"
            if _epoch_and_step(src) != (st.best_epoch, st.best_step):
                raise CheckpointError(
                    f"{src}: missing or overwritten, so {best} (epoch {st.best_epoch}, step "
                    f"{st.best_step}) cannot be restored"
                )
            with atomic_path(best) as tmp:
                shutil.copyfile(src, tmp)
            written.append(f"best.pt (= {src.name})")
        return written + self.write_outputs()

    def _save_config(self) -> None:
        save_config(self.exp_dir / "config.json", self.config, extra=self.config_extra)
        if self.command is not None:
            write_command(self.exp_dir, self.command)


def _epoch_and_step(path: Path) -> tuple[int, int] | None:
    """(epoch, step) of checkpoint ``path``; None if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
        return int(ckpt["epoch"]), int(ckpt["step"])
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        logging.warning("%s: unreadable (%s); it will be rewritten", path, e)
        return None


def check_ranks_in_sync(model: torch.nn.Module, exp_dir: Path, rank: int, world_size: int) -> None:
    """All-gather a float64 checksum of every parameter; rank 0 writes ``exp_dir/ddp-sync.txt``
    (``identical True`` when the DDP ranks ended with the same weights)."""
    vec = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    gathered = [torch.zeros_like(vec) for _ in range(world_size)]
    dist.all_gather(gathered, vec)
    if rank == 0:
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        with atomic_write(exp_dir / "ddp-sync.txt") as f:
            f.write(
                "".join(
                    f"rank {r} checksum {float(g.sum()):.12e}\n" for r, g in enumerate(gathered)
                )
                + f"identical {same}\n"
            )
        if not same:
            logging.error("DDP ranks diverged: parameter checksums differ")
