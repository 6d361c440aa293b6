"""The training budget and checkpoint-retention options every trainer config shares.

``train-asr``, ``train-lm`` and ``train-token-lm`` stop on the same budgets and prune epoch
checkpoints by the same rule (:class:`common.trainer.Trainer`); their configs inherit the
options, their help and their check from :class:`TrainBudget` instead of restating them. No torch
here: configs import this module.

Usage:
    @dataclass
    class TrainConfig(TrainBudget):
        num_epochs: int = 10
        def validate(self):
            self.validate_budget()
            ...
    LoopOptions(num_epochs=cfg.num_epochs, **cfg.budget_options(), ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.io import InputError


@dataclass
class TrainBudget:
    """``--max-steps``, ``--max-minutes``, ``--keep-last-k`` (fields first in a subclass)."""

    max_steps: int = field(
        default=0,
        metadata={"help": "stop (after a checkpoint) at this total step count (0 = off)"},
    )
    max_minutes: float = field(
        default=0.0,
        metadata={
            "help": "stop (after a checkpoint) once this many minutes were trained in total, "
            "earlier (resumed) runs included; a cut epoch continues when the limit is raised "
            "(0 = off)"
        },
    )
    keep_last_k: int = field(
        default=0,
        metadata={
            "help": "keep only the newest K epoch-N.pt checkpoints (older ones are deleted after "
            "each epoch; best.pt stays; average-checkpoints --avg N needs K >= N); 0 = keep all"
        },
    )

    def validate_budget(self) -> None:
        """Raises :class:`InputError` naming the offending option."""
        if self.max_steps < 0 or self.max_minutes < 0:
            raise InputError("--max-steps and --max-minutes must be >= 0 (0 = no limit)")
        if self.keep_last_k < 0:
            raise InputError("--keep-last-k must be >= 0 (0 = keep every checkpoint)")

    def budget_options(self) -> dict:
        """The fields as :class:`common.trainer.LoopOptions` keyword arguments."""
        return {
            "max_steps": self.max_steps,
            "max_minutes": self.max_minutes,
            "keep_last_k": self.keep_last_k,
        }
