"""Tune the LM scale λ and word bonus β on the **dev** n-best lists (objective: dev WER).

Grid search over λ x β; each distinct dev hypothesis is scored by the LM once, then every grid
point is a cheap argmax over padded arrays (:func:`rescoring.params.total_score` on the whole
``(U, N)`` arrays). Ties go to the smaller λ, then the β closest to 0. The test set is never
read here: apply the result with ``rescore-nbest --params tuned.json``. ``--set-name`` names the
tuning set in the output names (default ``dev``).

Usage:
    tune-rescoring --nbest exp/asr/x/modified_beam_beam8/nbest-dev.jsonl.gz --scorer nlm \\
        --lm-checkpoint exp/lm/<lm>/best.pt --out-dir exp/rescore/<system>
    tune-rescoring --nbest-dir exp/asr/x/modified_beam_beam8 --scorer nlm \\
        --lm-checkpoint exp/lm/<lm>/best.pt --out-dir exp/rescore/<system>

OUTPUTS (in --out-dir; one all-or-nothing set, see rescoring/outputs.py):
    tuned.json               the chosen weights {"am": 1, "lm:<scorer>": λ, "num_words": β}
                             and their provenance: scorer, checkpoints, tuning n-best and set,
                             the grid, the WER they give there and the first pass's
                             (rescoring/params.py); every key is required when read, paths
                             are relative to tuned.json's folder
    sweep-dev.tsv            lm_scale, word_bonus, dev WER for every grid point
    rescored-dev.jsonl.gz, onebest-dev.jsonl.gz, rescore-dev.json   dev rescored with the choice
    set-tune-dev.json        written last: each file's sha256 and the run's parameters

The grid options are checked before anything is allocated: steps of at least 1e-6, min <= max,
and at most --max-grid-points (λ, β) points (default 100,000).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.cli import run_cli
from common.io import InputError, atomic_write
from rescoring.nbest import DEFAULT_MAX_HYPS, load_nbest
from rescoring.outputs import OutputSet, check_name_part, output_folder, verify_output
from rescoring.params import (
    FeatureArrays,
    Grid,
    TunedParams,
    Weights,
    lm_feature,
    tuned_json,
    write_tuned,
)
from rescoring.rescore import (
    apply_weights,
    check_run_options,
    load_nlu,
    nbest_arrays,
    write_outputs,
)
from rescoring.scorers import SCORERS, build_scorer, score_cache, score_nbest

#: Grid values are rounded to 6 decimals, so a finer step would give repeated values.
MIN_GRID_STEP = 1e-6
DEFAULT_MAX_GRID_POINTS = 100_000


def grid_size(lo: float, hi: float, step: float, option: str = "grid") -> int:
    """Number of values of ``grid(lo, hi, step)``, validated, computed without allocating.

    Args:
        option: the options' prefix in error messages (``--lm-scale``).

    Raises:
        InputError: a bound or step that is not finite, ``step < 1e-6`` or ``min > max``.
    """
    for name, v in (("min", lo), ("max", hi), ("step", step)):
        if not math.isfinite(v):
            raise InputError(f"{option}-{name} must be a finite number, got {v}")
    if step < MIN_GRID_STEP:
        raise InputError(
            f"{option}-step must be at least {MIN_GRID_STEP:g} (grid values are rounded to "
            f"6 decimals), got {step:g}"
        )
    if hi < lo:
        raise InputError(f"{option}-min ({lo:g}) must not be greater than {option}-max ({hi:g})")
    n = (hi - lo) / step + 0.5
    return math.ceil(n) if math.isfinite(n) else sys.maxsize


def grid(lo: float, hi: float, step: float, option: str = "grid") -> np.ndarray:
    """``lo, lo + step, ..., hi`` (inclusive), rounded to 6 decimals."""
    grid_size(lo, hi, step, option)
    return np.round(np.arange(lo, hi + step / 2, step), 6)


def sweep(
    arrays: FeatureArrays, lm: str | None, lambdas: np.ndarray, betas: np.ndarray
) -> list[tuple[float, float, float]]:
    """WER for every (λ, β) of :meth:`Weights.lm_bonus` on the LM feature ``lm`` (None: no LM
    term, λ has no effect) and ``num_words``, λ-major."""
    return [
        (lam, b, arrays.wer(Weights.lm_bonus(lm, lam, b)))
        for lam in map(float, lambdas)
        for b in map(float, betas)
    ]


def best_point(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return min(rows, key=lambda r: (round(r[2], 9), r[0], abs(r[1])))


@dataclass
class GridOptions:
    """The λ x β grid options (of ``tune-rescoring`` and ``rescore-systems``)."""

    lm_scale_min: float = field(default=0.0, metadata={"help": "λ grid start"})
    lm_scale_max: float = field(default=1.5, metadata={"help": "λ grid end"})
    lm_scale_step: float = field(default=0.05, metadata={"help": "λ grid step"})
    word_bonus_min: float = field(default=-1.0, metadata={"help": "β grid start"})
    word_bonus_max: float = field(default=3.0, metadata={"help": "β grid end"})
    word_bonus_step: float = field(default=0.25, metadata={"help": "β grid step"})
    max_grid_points: int = field(
        default=DEFAULT_MAX_GRID_POINTS,
        metadata={"help": "most (λ, β) points of the grid; a larger grid is an error"},
    )


@dataclass
class TuneConfig(GridOptions):
    nbest: Path = field(
        default=Path("nbest-dev.jsonl.gz"), metadata={"help": "dev n-best (any supported form)"}
    )
    nbest_dir: Path | None = field(
        default=None,
        metadata={
            "help": "decode folder; reads <dir>/nbest-<set-name>.jsonl.gz (overrides --nbest)"
        },
    )
    set_name: str = field(
        default="dev", metadata={"help": "name of the tuning set in output names"}
    )
    refs: Path | None = field(default=None, metadata={"help": "references for TSV/.ark n-best"})
    out_dir: Path = field(
        default=Path("exp/rescore"),
        metadata={"help": "output folder (created; locked for the run: one run at a time)"},
    )
    scorer: str = field(default="nlm", metadata={"help": f"one of {sorted(SCORERS)}"})
    lm_checkpoint: Path | None = field(default=None, metadata={"help": "train-lm checkpoint"})
    nlu_checkpoint: Path | None = field(
        default=None,
        metadata={
            "help": "multitask LM for intent/slots of the chosen hypothesis (default: the scorer's)"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "LM batch size"})
    score_cache: Path | None = field(
        default=None,
        metadata={
            "help": "folder of LM scores to reuse: a sentence list scored before by the same "
            "checkpoint, batch size and threads (rescore-systems: <out-dir>/score-cache)"
        },
    )
    max_hyps: int = field(
        default=DEFAULT_MAX_HYPS,
        metadata={"help": "most hypotheses per utterance; an utterance with more is an error"},
    )


def grid_of(cfg: GridOptions, points: int) -> Grid:
    """The grid of ``cfg``'s options and the number of points evaluated, for ``tuned.json``."""
    return Grid(
        lm_scale_min=cfg.lm_scale_min,
        lm_scale_max=cfg.lm_scale_max,
        lm_scale_step=cfg.lm_scale_step,
        word_bonus_min=cfg.word_bonus_min,
        word_bonus_max=cfg.word_bonus_max,
        word_bonus_step=cfg.word_bonus_step,
        points=points,
    )


def check_grid(cfg: GridOptions, uses_lm: bool = True) -> tuple[int, int]:
    """Validate the grid options and its size before anything is allocated.

    Returns:
        (number of λ values, number of β values); one λ when the scorer uses no LM.
    """
    n_lam = grid_size(cfg.lm_scale_min, cfg.lm_scale_max, cfg.lm_scale_step, "--lm-scale")
    n_beta = grid_size(cfg.word_bonus_min, cfg.word_bonus_max, cfg.word_bonus_step, "--word-bonus")
    if cfg.max_grid_points < 1:
        raise InputError(f"--max-grid-points must be >= 1, got {cfg.max_grid_points}")
    n_lam = n_lam if uses_lm else 1
    if n_lam * n_beta > cfg.max_grid_points:
        raise InputError(
            f"the λ x β grid has {n_lam:,} x {n_beta:,} = {n_lam * n_beta:,} points, more than "
            f"--max-grid-points {cfg.max_grid_points:,}: use coarser --lm-scale-step / "
            "--word-bonus-step or narrower ranges, or raise --max-grid-points"
        )
    return n_lam, n_beta


def tune(cfg: TuneConfig) -> TunedParams:
    check_name_part(cfg.set_name, "--set-name")
    check_run_options(cfg.batch_size, cfg.max_hyps)
    if cfg.scorer not in SCORERS:
        raise InputError(f"unknown scorer {cfg.scorer!r}; known: {sorted(SCORERS)}")
    check_grid(cfg, uses_lm=SCORERS[cfg.scorer].uses_lm)
    if cfg.nbest_dir is not None:
        cfg.nbest = cfg.nbest_dir / f"nbest-{cfg.set_name}.jsonl.gz"
    with output_folder(cfg.out_dir):
        verify_output(cfg.nbest)
        records = load_nbest(cfg.nbest, cfg.refs, cfg.max_hyps)
        scorer = build_scorer(cfg.scorer, cfg.lm_checkpoint, cfg.batch_size)
        nlu = load_nlu(cfg.nlu_checkpoint, scorer)
        stats = score_nbest(records, scorer, score_cache(cfg.score_cache))
        lm = lm_feature(cfg.scorer)
        arrays = nbest_arrays(records, lm)
        if scorer.uses_lm:
            lambdas = grid(cfg.lm_scale_min, cfg.lm_scale_max, cfg.lm_scale_step, "--lm-scale")
        else:
            lambdas = np.array([0.0])
        betas = grid(cfg.word_bonus_min, cfg.word_bonus_max, cfg.word_bonus_step, "--word-bonus")
        rows = sweep(arrays, lm, lambdas, betas)
        lam, beta, wer = best_point(rows)
        baseline = arrays.wer(Weights.lm_bonus(lm, 0.0, 0.0))
        weights = Weights.lm_bonus(lm, lam, beta)
        tuned = TunedParams(
            weights=weights,
            scorer=cfg.scorer,
            lm_checkpoint=cfg.lm_checkpoint,
            nlu_checkpoint=cfg.nlu_checkpoint,
            tuned_on=cfg.nbest,
            set=cfg.set_name,
            wer=wer,
            wer_first_pass=baseline,
            grid=grid_of(cfg, points=len(rows)),
        )
        apply_weights(records, weights, lm)
        info = tuned_json(tuned)
        s = cfg.set_name
        with OutputSet(cfg.out_dir, f"tune-{s}", "tune-rescoring", info) as out:
            with atomic_write(out.dir / f"sweep-{s}.tsv") as f:
                f.write(f"lm_scale\tword_bonus\t{s}_wer\n")
                f.write("".join(f"{a:g}\t{b:g}\t{w:.4f}\n" for a, b, w in rows))
            write_tuned(out.dir / "tuned.json", tuned, base=cfg.out_dir)
            write_outputs(
                records,
                out.dir,
                s,
                nlu,
                {**info, "lm_timing": stats, "nbest": str(cfg.nbest)},
            )
    logging.info(
        "Tuned on %s: λ=%g β=%g WER %.2f%% (first pass %.2f%%, %d grid points)",
        cfg.set_name,
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
