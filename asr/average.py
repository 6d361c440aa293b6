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
    epoch: int = field(default=0, metadata={"help": "last epoch to include (0 = the newest)"})
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


def average(cfg: AverageConfig) -> Path:
    """Average epochs ``epoch - avg + 1 .. epoch`` of ``exp_dir``; returns the output path.

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
        last = cfg.epoch or max(by_epoch)
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
