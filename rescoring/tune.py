"""Tune the LM scale λ and word bonus β on the **dev** n-best lists (objective: dev WER).

Grid search over λ x β; each distinct dev hypothesis is scored by the LM once, then every grid
point is a cheap argmax over padded arrays. Ties go to the smaller λ, then the β closest to 0.
The test set is never read here: apply the result with ``rescore-nbest --params tuned.json``.

Usage:
    tune-rescoring --nbest exp/asr/x/modified_beam_beam8/nbest-dev.jsonl.gz --scorer nlm \\
        --lm-checkpoint exp/lm/multitask_rwm/best.pt --out-dir exp/rescore/multitask_rwm
    tune-rescoring --nbest-dir exp/asr/x/modified_beam_beam8 --scorer nlm \\
        --lm-checkpoint exp/lm/multitask_rwm/best.pt --out-dir exp/rescore/multitask_rwm

OUTPUTS (in --out-dir):
    tuned.json               scorer, checkpoint, λ, β and the dev WER they give
    sweep-dev.tsv            lm_scale, word_bonus, dev WER for every grid point
    rescored-dev.jsonl.gz, onebest-dev.jsonl.gz, rescore-dev.json   dev rescored with the choice
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.cli import run_cli
from common.io import InputError, atomic_write
from rescoring.nbest import load_nbest
from rescoring.rescore import NbestArrays, apply_weights, load_nlu, write_outputs
from rescoring.scorers import SCORERS, build_scorer, score_nbest


def grid(lo: float, hi: float, step: float) -> np.ndarray:
    if step <= 0 or hi < lo:
        raise InputError(f"bad grid {lo}:{hi}:{step}")
    return np.round(np.arange(lo, hi + step / 2, step), 6)


def sweep(
    arrays: NbestArrays, lambdas: np.ndarray, betas: np.ndarray
) -> list[tuple[float, float, float]]:
    """Dev WER for every (λ, β)."""
    return [
        (float(lam), float(b), arrays.wer(arrays.choose(lam, b))) for lam in lambdas for b in betas
    ]


def best_point(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return min(rows, key=lambda r: (round(r[2], 9), r[0], abs(r[1])))


@dataclass
class TuneConfig:
    nbest: Path = field(
        default=Path("nbest-dev.jsonl.gz"), metadata={"help": "dev n-best (any supported form)"}
    )
    nbest_dir: Path | None = field(
        default=None,
        metadata={"help": "decode folder; reads <dir>/nbest-dev.jsonl.gz (overrides --nbest)"},
    )
    refs: Path | None = field(default=None, metadata={"help": "references for TSV/.ark n-best"})
    out_dir: Path = field(default=Path("exp/rescore"), metadata={"help": "output folder"})
    scorer: str = field(default="nlm", metadata={"help": f"one of {sorted(SCORERS)}"})
    lm_checkpoint: Path | None = field(default=None, metadata={"help": "train-lm checkpoint"})
    nlu_checkpoint: Path | None = field(
        default=None,
        metadata={
            "help": "multitask LM for intent/slots of the chosen hypothesis (default: the scorer's)"
        },
    )
    lm_scale_min: float = field(default=0.0, metadata={"help": "λ grid start"})
    lm_scale_max: float = field(default=1.5, metadata={"help": "λ grid end"})
    lm_scale_step: float = field(default=0.05, metadata={"help": "λ grid step"})
    word_bonus_min: float = field(default=-1.0, metadata={"help": "β grid start"})
    word_bonus_max: float = field(default=3.0, metadata={"help": "β grid end"})
    word_bonus_step: float = field(default=0.25, metadata={"help": "β grid step"})
    batch_size: int = field(default=64, metadata={"help": "LM batch size"})


def tune(cfg: TuneConfig) -> dict:
    if cfg.nbest_dir is not None:
        cfg.nbest = cfg.nbest_dir / "nbest-dev.jsonl.gz"
    records = load_nbest(cfg.nbest, cfg.refs)
    scorer = build_scorer(cfg.scorer, cfg.lm_checkpoint, cfg.batch_size)
    stats = score_nbest(records, scorer)
    arrays = NbestArrays.from_records(records)
    lambdas = grid(cfg.lm_scale_min, cfg.lm_scale_max, cfg.lm_scale_step)
    if not scorer.uses_lm:
        lambdas = np.array([0.0])
    betas = grid(cfg.word_bonus_min, cfg.word_bonus_max, cfg.word_bonus_step)
    rows = sweep(arrays, lambdas, betas)
    lam, beta, wer = best_point(rows)
    baseline = arrays.wer(arrays.choose(0.0, 0.0))
    with atomic_write(cfg.out_dir / "sweep-dev.tsv") as f:
        f.write("lm_scale\tword_bonus\tdev_wer\n")
        f.write("".join(f"{a:g}\t{b:g}\t{w:.4f}\n" for a, b, w in rows))
    tuned = {
        "scorer": cfg.scorer,
        "lm_checkpoint": str(cfg.lm_checkpoint) if cfg.lm_checkpoint else None,
        "nlu_checkpoint": str(cfg.nlu_checkpoint) if cfg.nlu_checkpoint else None,
        "lm_scale": lam,
        "word_bonus": beta,
        "dev_wer": wer,
        "dev_wer_first_pass": baseline,
        "tuned_on": str(cfg.nbest),
        "grid_points": len(rows),
    }
    with atomic_write(cfg.out_dir / "tuned.json") as f:
        json.dump(tuned, f, indent=2)
    apply_weights(records, lam, beta)
    write_outputs(
        records,
        cfg.out_dir,
        "dev",
        load_nlu(cfg.nlu_checkpoint, scorer),
        {**tuned, "lm_timing": stats, "nbest": str(cfg.nbest)},
    )
    logging.info(
        "Tuned on dev: λ=%g β=%g dev WER %.2f%% (first pass %.2f%%, %d grid points)",
        lam,
        beta,
        wer,
        baseline,
        len(rows),
    )
    return tuned


def main(argv: list[str] | None = None) -> None:
    run_cli("tune-rescoring", TuneConfig, tune, __doc__, argv, errors=(InputError, ValueError))


if __name__ == "__main__":
    main()
