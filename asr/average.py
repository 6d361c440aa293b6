"""Average the model weights of the last N epoch checkpoints (icefall's ``--avg``).

Usage:
    average-checkpoints --exp-dir exp/asr/conformer_rnnt --epoch 14 --avg 4 \
        --out exp/asr/conformer_rnnt/epoch-14-avg-4.pt

The output is a checkpoint (``model`` = averaged weights, ``config`` and ``env`` of the newest
input, ``averaged_from`` = the input paths) loadable by ``decode-asr --checkpoint``. Every input
must be a ``train-asr`` checkpoint with the same model config as the newest. The exp dir is
locked while averaging (a trainer still running on it makes this fail at once, naming it); a
read-only exp dir (averaging someone else's model into ``--out``) is read without the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from asr.config import ModelConfig
from common.checkpoint import (
    CheckpointError,
    average_checkpoints,
    epoch_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from common.cli import run_cli
from common.io import InputError, dir_lock


@dataclass
class AverageConfig:
    exp_dir: Path = field(default=Path("exp/asr/conformer_rnnt"), metadata={"help": "exp dir"})
    epoch: int = field(
        default=0,
        metadata={
            "help": "last epoch to include (0 = the newest, or the one before it when the newest "
            "is a partial epoch of less than half an epoch: a budget stopped it; not when it "
            "ends an LR cool-down, train-asr --lr-cooldown-steps, at --max-steps)"
        },
    )
    avg: int = field(default=3, metadata={"help": "number of epochs to average"})
    out: Path | None = field(
        default=None, metadata={"help": "output (default: exp-dir/epoch-E-avg-N.pt)"}
    )


AVERAGE_PRESETS = {
    "tiny": AverageConfig(avg=2),
    "default": AverageConfig(avg=3),
    "large": AverageConfig(avg=5),
}


def _exp_dir_lock(exp_dir: Path):
    """:func:`dir_lock` on ``exp_dir``, or nothing for a read-only folder nobody can train in."""
    if exp_dir.is_dir() and not os.access(exp_dir, os.W_OK):
        logging.warning("%s is read-only: averaging without the exp-dir lock", exp_dir)
        return contextlib.nullcontext()
    return dir_lock(exp_dir, "exp dir")


def _newest_to_average(by_epoch: dict[int, Path]) -> int:
    """The last epoch to average when ``--epoch`` is not given: the newest, unless a budget
    stopped it early (a *partial* ``epoch-N.pt``) with less than half an epoch trained, then the
    one before. Averaging such a checkpoint would weigh the epoch before it about twice (the
    recipe's 7,000-step cap ends epoch 22 after 13 of its 332 steps). An epoch's length is the
    step count between the two checkpoints before it; without them the newest is used. A
    partial newest epoch that ends an LR cool-down (``train-asr --lr-cooldown-steps``: its step is
    the training's ``--max-steps``, where the LR reached 0) is always used: its weights are the
    most annealed, not nearly the epoch before's. One that ``--max-minutes`` stopped during the
    cool-down is only partly annealed and follows the half-epoch rule."""
    last = max(by_epoch)
    if last - 1 not in by_epoch or last - 2 not in by_epoch:
        return last
    newest = load_checkpoint(by_epoch[last])
    if not newest.get("partial"):
        return last
    train_cfg = (newest.get("config") or {}).get("train") or {}
    cooldown, max_steps = (int(train_cfg.get(k) or 0) for k in ("lr_cooldown_steps", "max_steps"))
    newest_step = int(newest.get("step", -1))
    if cooldown > 0 and max_steps > 0 and newest_step >= max_steps:
        logging.info(
            "%s is a partial epoch that ends an LR cool-down: averaging up to it",
            by_epoch[last].name,
        )
        return last
    step = {e: int(load_checkpoint(by_epoch[e]).get("step", -1)) for e in (last - 2, last - 1)}
    length = step[last - 1] - step[last - 2]
    done = newest_step - step[last - 1]
    if length <= 0 or done < 0 or 2 * done >= length:
        return last
    logging.info(
        "%s is a partial epoch (%d of about %d steps): averaging up to epoch %d instead",
        by_epoch[last].name,
        done,
        length,
        last - 1,
    )
    return last - 1


def average(cfg: AverageConfig) -> Path:
    """Average epochs ``epoch - avg + 1 .. epoch`` of ``exp_dir`` (``--epoch 0``: the newest,
    or the one before a partial newest epoch of less than half an epoch); returns the output path.

    Raises:
        InputError: for ``--avg`` < 1 or ``--epoch`` < 0.
        CheckpointError: naming the exp dir when an epoch is missing, or the checkpoint that
            is corrupt, not a ``train-asr`` checkpoint, or of another model config.
    """
    if cfg.avg < 1 or cfg.epoch < 0:
        raise InputError(f"--avg must be >= 1 and --epoch >= 0, got {cfg.avg} and {cfg.epoch}")
    exp_dir = Path(cfg.exp_dir)
    if not exp_dir.is_dir():
        raise CheckpointError(f"{exp_dir}: no such exp dir")
    with _exp_dir_lock(exp_dir):
        by_epoch = epoch_checkpoints(exp_dir)
        if not by_epoch:
            raise CheckpointError(f"{exp_dir}: no epoch-N.pt checkpoints")
        last = cfg.epoch or _newest_to_average(by_epoch)
        wanted = list(range(last - cfg.avg + 1, last + 1))
        missing = [e for e in wanted if e not in by_epoch]
        if missing:
            raise CheckpointError(f"{exp_dir}: cannot average epochs {wanted}; missing {missing}")
        paths = [by_epoch[e] for e in wanted]
        logging.info("averaging %s", [p.name for p in paths])
        newest = load_checkpoint(paths[-1])
        model_cfg = ModelConfig.from_checkpoint(newest, paths[-1])
        for p in paths[:-1]:
            if ModelConfig.from_checkpoint(load_checkpoint(p), p) != model_cfg:
                raise CheckpointError(f"{p}: model config differs from {paths[-1]}")
        out = cfg.out or exp_dir / f"epoch-{last}-avg-{cfg.avg}.pt"
        save_checkpoint(
            out,
            {
                "model": average_checkpoints(paths),
                "config": newest.get("config", {}),
                "epoch": last,
                "averaged_from": [str(p) for p in paths],
            },
        )
    return out


def main(argv: list[str] | None = None) -> None:
    run_cli(
        "average-checkpoints",
        AverageConfig,
        lambda cfg: print(average(cfg)),
        __doc__,
        argv,
        presets=AVERAGE_PRESETS,
        preset_help="sets --avg (tiny: 2, default: 3, large: 5) (default: default)",
        group_title="averaging",
    )


if __name__ == "__main__":
    main()
