"""Average the model weights of the last N epoch checkpoints (icefall's ``--avg``).

Usage:
    average-checkpoints --exp-dir exp/asr/conformer_rnnt --epoch 14 --avg 4 \
        --out exp/asr/conformer_rnnt/epoch-14-avg-4.pt

The output is a checkpoint (``model`` = averaged weights, ``config`` and ``env`` of the newest
input, ``averaged_from`` = the input paths) loadable by ``decode-asr --checkpoint``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from common.checkpoint import (
    CheckpointError,
    average_checkpoints,
    list_epoch_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from common.cli import run_cli


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


def average(cfg: AverageConfig) -> Path:
    ckpts = list_epoch_checkpoints(cfg.exp_dir)
    if not ckpts:
        raise CheckpointError(f"{cfg.exp_dir}: no epoch-N.pt checkpoints")
    by_epoch = {int(p.stem.split("-")[1]): p for p in ckpts}
    last = cfg.epoch or max(by_epoch)
    wanted = list(range(last - cfg.avg + 1, last + 1))
    missing = [e for e in wanted if e not in by_epoch]
    if missing or cfg.avg < 1:
        raise CheckpointError(f"{cfg.exp_dir}: cannot average epochs {wanted}; missing {missing}")
    paths = [by_epoch[e] for e in wanted]
    logging.info("averaging %s", [p.name for p in paths])
    newest = load_checkpoint(paths[-1])
    out = cfg.out or Path(cfg.exp_dir) / f"epoch-{last}-avg-{cfg.avg}.pt"
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
        errors=(),
        presets=AVERAGE_PRESETS,
        preset_help="sets --avg (tiny: 2, default: 3, large: 5) (default: default)",
        group_title="averaging",
    )


if __name__ == "__main__":
    main()
