"""The log-linear rescorer: ``total = sum_f w_f x_f`` over the features of ``extract-features``.

* **Weights**: :class:`rescoring.params.Weights`, the one weights object of every decoder (a
  typed map feature name -> weight over the registered features of :mod:`rescoring.features`,
  ``am`` fixed at 1), and :func:`rescoring.params.total_score`, the one formula, on floats (a
  hypothesis) as on the tuner's ``(U, N)`` arrays (:class:`rescoring.params.FeatureArrays`),
  summing in the canonical feature order ``am``, ``lm:*``, ``num_words``, ... With only
  ``am``, one ``lm:<x>`` and ``num_words`` weighted it is what ``rescore-nbest`` computes with
  the same λ, β, so it chooses exactly the same hypotheses (tested).
* **Tuner** (``tune-loglinear``, **dev only**): ``--objective mwer`` (default), regularised
  minimum expected WER, or ``--objective wer``, coordinate ascent on corpus WER.

  1. Start (``--init grid``) from the (λ, β) of ``tune-rescoring``'s grid search on the first
     ``lm:*`` feature x ``num_words`` (same grids, same tie rule: :func:`rescoring.tune.sweep`,
     :func:`~rescoring.tune.best_point`), every other weight 0; or (``--init zero``) from the
     first pass (all weights 0).
  2. A pass visits every feature but ``am`` in canonical order and line-searches its weight
     over its grid (``--grid NAME=MIN:MAX:STEP``; defaults per feature in the registry), the
     other weights fixed: the WER of every grid value is computed (a MERT-like line search on
     a grid). The weight moves only when some value gives strictly fewer errors than the
     current weights; it then goes to the middle of the longest run of consecutive grid values
     with the fewest errors (ties: the run nearest 0, then the lower), a point inside a
     plateau rather than on its edge.
  3. Passes repeat until one changes nothing or ``--passes`` were run. Deterministic (no
     randomness; the dev WER never rises from the start point).

  ``mwer`` starts from the same point ``w0`` (``--init``) and minimises, with L-BFGS, the
  expected word errors of the n-best under ``p_n ∝ exp(s · total_n)`` (``--mwer-scale`` s,
  default 1: the totals are log-probabilities) divided by the reference words, plus
  ``l2/2 · Σ_f (σ_f (w_f − w0_f))²``, σ_f the feature's standard deviation over the
  hypotheses: smooth, so every feature moves a little instead of one jumping to a grid edge,
  and pulled toward ``w0``, so weights that only fit dev noise stay small. ``--l2`` with several
  values picks the one with the fewest pooled held-out errors in ``--folds`` CV on the tuning
  set (ties: the stronger; ``inf`` = keep ``w0``). Measured on the SNIPS recipe's dev
  (rescoring/README.md): coordinate ascent overfits (its CV held-out WER no better than the
  start point's), ``mwer`` with ``l2 = 0.001`` does not.

  ``--folds K`` (default 5) cross-validates the whole procedure on dev: utterances are dealt
  into K folds (sorted ids, shuffled with ``--cv-seed``), the tuner runs on K-1 folds and is
  scored on the held-out one. The weights file reports per fold the in-fold (tuned-on) WER,
  the held-out WER, and the held-out WER of the start point (the tuned λ, β alone) and of the
  first pass, with means over folds and pooled held-out WERs: held-out close to in-fold (and
  below the start point's) means the features generalise rather than overfit. The final
  weights are tuned on all of dev.

  The tuner refuses a features file whose file or folder name (as given or after resolving a
  symlink), or the n-best it was extracted from (its metadata), has a part ``test`` or
  ``eval`` (parts split at ``_``, ``-``, ``.``: ``features-test.jsonl.gz``, ``eval/x.jsonl.gz``
  are refused, ``latest.jsonl.gz`` is not): weights are tuned on dev only.
* **Rescoring** (``rescore-loglinear``): features + weights -> ``onebest-{set}.jsonl.gz`` in
  ``rescore-nbest``'s form ``{"id", "ref", "hyp", "total", ["intent", "slots"]}`` (``total``
  the log-linear total; intent and slots of the chosen hypothesis from ``--nlu-checkpoint``,
  else those stored in the features file), so ``score-wer`` scores it. A weighted feature
  missing from the features file, or features extracted with other checkpoints than the tuning
  features (both metadata known), is an error naming the files.

Usage:
    tune-loglinear --features-file exp/rescore/<system>/features-dev.jsonl.gz \\
        --out exp/rescore/<system>/loglinear.json --grid intent_conf=0:20:1
    rescore-loglinear --features-file exp/rescore/<system>/features-test.jsonl.gz \\
        --weights exp/rescore/<system>/loglinear.json --out-dir exp/rescore/<system> --set-name test

OUTPUTS:
    tune-loglinear     --out (JSON, atomic): ``weights`` {feature: w}, ``features``,
                       ``features_file`` (relative to --out's folder), ``set``, ``extraction``
                       (checkpoints of the features), ``init``, ``objective``, ``mwer`` (null
                       for wer; else ``scale``, ``l2_candidates``, ``l2`` (chosen), ``l2_cv``
                       {l2: CV WER} or null, ``iterations``), ``passes``, ``passes_run``,
                       ``grid`` {feature: {min, max, step, points}}, ``folds``, ``cv_seed``,
                       ``wer``, ``wer_first_pass``, ``wer_init``, ``trace`` (dev WER after
                       each pass), ``cv`` (per fold and pooled; null with --folds 0)
    rescore-loglinear  in --out-dir, one all-or-nothing set (rescoring/outputs.py):
                       onebest-{set}.jsonl.gz, rescore-{set}.json (weights, inputs),
                       set-rescore-{set}.json (written last)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from common.cli import run_cli
from common.io import InputError, atomic_write, open_text, write_jsonl
from rescoring.features import (
    AM,
    LM_PREFIX,
    FeatureRecord,
    FeatureSet,
    canonical_order,
    default_grid,
    make_feature,
    read_features,
)
from rescoring.fields import at, check_number, get_str, shown
from rescoring.outputs import OutputSet, check_name_part, output_folder, verify_output
from rescoring.params import NUM_WORDS, OBJECTIVES, FeatureArrays, Weights, total_score
from rescoring.rescore import load_nlu
from rescoring.scorers import build_scorer
from rescoring.tune import MIN_GRID_STEP, best_point, sweep

N = TypeVar("N")  # a float, or a numpy array of them

# --- test-split refusal -------------------------------------------------------------------

#: Parts of a file or folder name that mark a test split. The rule of
#: ``data_prep.slot_lexicon.EVAL_SPLIT_MARKERS`` (copied: rescoring never imports data_prep),
#: without ``dev``/``valid``/``heldout``: dev is what the tuner tunes on.
TEST_SPLIT_MARKERS = frozenset({"test", "eval"})
_NAME_PARTS_RE = re.compile(r"[_\-.]+")


def split_marker(name: str) -> str | None:
    """The part of ``name`` (split at ``_``, ``-``, ``.``) that marks a test split, if any."""
    for part in _NAME_PARTS_RE.split(name.lower()):
        if part in TEST_SPLIT_MARKERS:
            return part
    return None


def refuse_test_path(path: str | Path, what: str = "the features file") -> None:
    """Raise if ``path``'s file name or folder name (as given or resolved) marks a test split.

    Raises:
        InputError: naming the path, the marker and that tuning is on dev only.
    """
    path = Path(path)
    for p in dict.fromkeys([path, path.resolve()]):
        target = "" if p == path else f" (its target {p})"
        folder = p.parent.name.lower()
        for kind, marker in (
            ("file", split_marker(p.name)),
            ("folder", folder if folder in TEST_SPLIT_MARKERS else None),  # Kaldi-style test/
        ):
            if marker:
                raise InputError(
                    f"{path}: the {kind} name of {what}{target} marks a {marker!r} split; "
                    "tune-loglinear tunes on dev only (rescore the test set with "
                    "rescore-loglinear)"
                )


# --- the tuner --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridSpec:
    min: float
    max: float
    step: float

    def values(self) -> np.ndarray:
        """``min, min + step, ..., max`` (inclusive), rounded to 6 decimals (as tune-rescoring)."""
        return np.round(np.arange(self.min, self.max + self.step / 2, self.step), 6)

    def size(self) -> int:
        n = (self.max - self.min) / self.step + 0.5
        return math.ceil(n) if math.isfinite(n) else 2**62


def check_grid_spec(name: str, g: GridSpec, max_points: int) -> GridSpec:
    opt = f"--grid {name}"
    for what, v in (("min", g.min), ("max", g.max), ("step", g.step)):
        if not math.isfinite(v):
            raise InputError(f"{opt}: {what} must be a finite number, got {v}")
    if g.step < MIN_GRID_STEP:
        raise InputError(f"{opt}: step must be at least {MIN_GRID_STEP:g}, got {g.step:g}")
    if g.max < g.min:
        raise InputError(f"{opt}: min ({g.min:g}) must not be greater than max ({g.max:g})")
    if g.size() > max_points:
        raise InputError(
            f"{opt}: {g.size():,} grid values, more than --max-grid-points {max_points:,}"
        )
    return g


def parse_grids(specs: Sequence[str], names: Sequence[str], max_points: int) -> dict[str, GridSpec]:
    """The weight grid of every feature but ``am``: the registry's default unless
    ``NAME=MIN:MAX:STEP`` overrides it."""
    grids = {n: GridSpec(*default_grid(n)) for n in names if n != AM}
    for s in specs:
        name, sep, rng = s.partition("=")
        parts = rng.split(":")
        if not sep or len(parts) != 3:
            raise InputError(f"--grid {s!r}: expected NAME=MIN:MAX:STEP")
        if name == AM:
            raise InputError(f"--grid {s!r}: the weight of '{AM}' is fixed at 1")
        if name not in grids:
            raise InputError(f"--grid {s!r}: {name!r} is not a tuned feature ({sorted(grids)})")
        try:
            grids[name] = GridSpec(*(float(p) for p in parts))
        except ValueError:
            raise InputError(f"--grid {s!r}: MIN, MAX and STEP must be numbers") from None
    return {n: check_grid_spec(n, g, max_points) for n, g in grids.items()}


def _plateau_pick(values: np.ndarray, errs: np.ndarray, best: int) -> float:
    """Middle of the longest run of consecutive grid values with ``best`` errors (ties: the run
    whose middle is nearest 0, then the lower)."""
    runs: list[list[int]] = []
    for i, e in enumerate(errs):
        if e != best:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    mids = [float(values[r[(len(r) - 1) // 2]]) for r in runs]
    k = min(range(len(runs)), key=lambda k: (-len(runs[k]), abs(mids[k]), mids[k]))
    return mids[k]


@dataclass
class TuneResult:
    weights: Weights
    errors: int
    init: Weights
    init_errors: int
    first_pass_errors: int
    trace: list[int]  # errors at the start and after each pass
    passes_run: int
    #: ``mwer``: the chosen ``l2`` (as text, ``inf`` = the start point), the cross-validated
    #: held-out WER of every candidate (None for one candidate) and the L-BFGS iterations
    mwer: dict | None = None


def initial_weights(
    arrays: FeatureArrays, names: Sequence[str], grids: Mapping[str, GridSpec], init: str
) -> Weights:
    """``--init``: ``zero``, or ``grid`` (tune-rescoring's λ x β search; module docstring)."""
    w = Weights.zeros(names)
    lms = [n for n in names if n.startswith(LM_PREFIX)]
    if init == "zero" or (not lms and NUM_WORDS not in names):
        return w
    lm = lms[0] if lms else None
    if NUM_WORDS not in names:  # β = 0 on a zero feature: the λ line only
        arrays = dataclasses.replace(arrays, x={**arrays.x, NUM_WORDS: np.zeros_like(arrays.x[AM])})
    lambdas = grids[lm].values() if lm else np.array([0.0])
    betas = grids[NUM_WORDS].values() if NUM_WORDS in names else np.array([0.0])
    lam, beta, _ = best_point(sweep(arrays, lm, lambdas, betas))
    if lm:
        w = w.replace(lm, lam)
    if NUM_WORDS in names:
        w = w.replace(NUM_WORDS, beta)
    return w


def coordinate_ascent(
    arrays: FeatureArrays,
    names: Sequence[str],
    grids: Mapping[str, GridSpec],
    passes: int = 5,
    init: str = "grid",
) -> TuneResult:
    """Tune the weights of ``names`` on ``arrays`` (module docstring); deterministic."""
    names = canonical_order(list(names))
    w0 = initial_weights(arrays, names, grids, init)
    w, cur = w0, arrays.num_errors(w0)
    trace = [cur]
    values = {n: grids[n].values() for n in names if n != AM}
    run = 0
    for _ in range(passes):
        run += 1
        changed = False
        for name in names:
            if name == AM:
                continue
            errs = np.array([arrays.num_errors(w.replace(name, float(v))) for v in values[name]])
            best = int(errs.min())
            if best < cur:
                w = w.replace(name, _plateau_pick(values[name], errs, best))
                cur, changed = best, True
                assert arrays.num_errors(w) == cur
        trace.append(cur)
        if not changed:
            break
    return TuneResult(
        weights=w,
        errors=cur,
        init=w0,
        init_errors=trace[0],
        first_pass_errors=arrays.num_errors(Weights.zeros(names)),
        trace=trace,
        passes_run=run,
    )


class MwerObjective:
    """The ``mwer`` objective of :func:`mwer_fit` and its gradient, in the standardised
    coordinates ``v_f = σ_f (w_f - w0_f)`` (so ``v = 0`` is ``w0``)."""

    def __init__(
        self, arrays: FeatureArrays, names: Sequence[str], w0: Weights, l2: float, scale: float
    ) -> None:
        self.free = [n for n in canonical_order(list(names)) if n != AM]
        self.w0, self.l2, self.scale = w0, l2, scale
        valid = arrays.valid
        sd = np.array([float(arrays.x[n][valid].std()) for n in self.free])
        sd[~(sd > 1e-12)] = 1.0  # a constant feature: unscaled
        self.sd = sd
        self.xs = np.stack(
            [np.where(valid, arrays.x[n], 0.0) / s for n, s in zip(self.free, sd, strict=True)]
        ).reshape(len(self.free), *valid.shape)
        self.base = np.where(valid, total_score(arrays.x, w0), -np.inf)
        self.err = arrays.errors.astype(np.float64)
        self.words = float(max(1, int(arrays.ref_words.sum())))

    def __call__(self, v: np.ndarray) -> tuple[float, np.ndarray]:
        """(expected errors / reference words + penalty, gradient) at ``v``."""
        z = self.scale * (self.base + np.tensordot(v, self.xs, axes=1))
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        expected = (p * self.err).sum(axis=1, keepdims=True)
        loss = float(expected.sum()) / self.words + 0.5 * self.l2 * float(v @ v)
        cov = np.tensordot(self.xs, p * (self.err - expected), axes=([1, 2], [0, 1]))
        return loss, self.scale * cov / self.words + self.l2 * v

    def weights(self, v: np.ndarray) -> Weights:
        """``w0 + v / σ``, rounded to 6 decimals (as the grids)."""
        w = self.w0
        for n, vi, s in zip(self.free, v, self.sd, strict=True):
            w = w.replace(n, round(self.w0.get(n) + float(vi) / s, 6) + 0.0)
        return w


def mwer_fit(
    arrays: FeatureArrays,
    names: Sequence[str],
    w0: Weights,
    l2: float,
    scale: float = 1.0,
    max_iter: int = 500,
) -> tuple[Weights, int]:
    """Minimum expected WER from ``w0`` (module docstring): ``(weights, L-BFGS iterations)``.

    Minimises ``sum_u sum_n p_un e_un / R + l2/2 * sum_f (s_f (w_f - w0_f))^2`` with
    ``p_u = softmax(scale * total_u)`` over the valid hypotheses of utterance ``u``, ``e`` the
    word errors, ``R`` the reference words and ``s_f`` the standard deviation of feature ``f``
    over the hypotheses (1 for a constant feature): the penalty is in units of each feature's
    spread, so one ``l2`` fits features of any scale. ``l2 = inf`` returns ``w0``.
    Deterministic (L-BFGS from ``v = 0``, no randomness).
    """
    from scipy.optimize import minimize

    if math.isinf(l2) or all(n == AM for n in names):
        return w0, 0
    f = MwerObjective(arrays, names, w0, l2, scale)
    res = minimize(
        f, np.zeros(len(f.free)), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    return f.weights(res.x), int(res.nit)


@dataclass(frozen=True)
class TunerSpec:
    """How ``tune-loglinear`` tunes (its options): one procedure, run on all of the tuning set
    and, for the cross-validation report, on each fold's training part."""

    names: tuple[str, ...]
    grids: Mapping[str, GridSpec]
    passes: int = 5
    init: str = "grid"
    objective: str = "mwer"
    l2: tuple[float, ...] = (0.001,)
    scale: float = 1.0
    folds: int = 5  # of the l2 choice (more than one candidate)
    cv_seed: int = 0

    def tune(self, arrays: FeatureArrays) -> TuneResult:
        if self.objective == "wer":
            return coordinate_ascent(arrays, self.names, self.grids, self.passes, self.init)
        return self._mwer(arrays)

    def _mwer(self, arrays: FeatureArrays) -> TuneResult:
        """Minimum expected WER from the start point; with several ``l2``, the one with the
        fewest pooled held-out errors in K-fold CV on ``arrays`` (ties: the stronger)."""
        names = canonical_order(list(self.names))
        l2_cv = None
        l2 = self.l2[0]
        if len(self.l2) > 1:
            folds = min(self.folds, len(arrays.ids))
            wers = {  # pooled held-out WER of each candidate alone (one denominator: errors)
                c: cross_validate(arrays, dataclasses.replace(self, l2=(c,)), folds, self.cv_seed)[
                    "pooled_heldout_wer"
                ]
                for c in sorted(self.l2, reverse=True)
            }
            l2 = min(wers, key=lambda c: (wers[c], -c))  # ties: the stronger penalty
            l2_cv = {f"{c:g}": w for c, w in wers.items()}
        w0 = initial_weights(arrays, names, self.grids, self.init)
        w, iters = mwer_fit(arrays, names, w0, l2, self.scale)
        e0, e = arrays.num_errors(w0), arrays.num_errors(w)
        return TuneResult(
            weights=w,
            errors=e,
            init=w0,
            init_errors=e0,
            first_pass_errors=arrays.num_errors(Weights.zeros(names)),
            trace=[e0, e],
            passes_run=1,
            mwer={"l2": f"{l2:g}", "l2_cv": l2_cv, "iterations": iters},
        )


def fold_of(ids: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Fold index of every utterance: sorted ids, shuffled with ``seed``, dealt round-robin."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    perm = np.random.default_rng(seed).permutation(len(order))
    out = np.empty(len(ids), dtype=np.int64)
    for k, p in enumerate(perm):
        out[order[p]] = k % folds
    return out


def cross_validate(arrays: FeatureArrays, tuner: TunerSpec, folds: int, seed: int) -> dict:
    """K-fold cross-validation of the whole tuning procedure ``tuner`` on one set (module
    docstring; with several ``l2`` the choice among them is redone inside every fold)."""
    if folds < 2 or folds > len(arrays.ids):
        raise InputError(
            f"--folds must be 0 (no cross-validation) or between 2 and the number of "
            f"utterances ({len(arrays.ids)}), got {folds}"
        )
    assign = fold_of(arrays.ids, folds, seed)
    rows = []
    pooled = {"tuned": 0, "init": 0, "first_pass": 0, "words": 0}
    for k in range(folds):
        train = arrays.subset(np.flatnonzero(assign != k))
        held = arrays.subset(np.flatnonzero(assign == k))
        res = tuner.tune(train)
        e_tuned, e_init = held.num_errors(res.weights), held.num_errors(res.init)
        e_first = held.num_errors(Weights.zeros(list(tuner.names)))
        words = int(held.ref_words.sum())
        rows.append(
            {
                "fold": k,
                "utterances": len(held.ids),
                "ref_words": words,
                "train_wer": train.wer_of(res.errors),
                "heldout_wer": held.wer_of(e_tuned),
                "heldout_wer_init": held.wer_of(e_init),
                "heldout_wer_first_pass": held.wer_of(e_first),
                "weights": res.weights.as_dict(),
                "l2": res.mwer["l2"] if res.mwer else None,
            }
        )
        for key, e in (("tuned", e_tuned), ("init", e_init), ("first_pass", e_first)):
            pooled[key] += e
        pooled["words"] += words
    pct = 100.0 / max(1, pooled["words"])
    return {
        "folds": rows,
        "mean_train_wer": float(np.mean([r["train_wer"] for r in rows])),
        "mean_heldout_wer": float(np.mean([r["heldout_wer"] for r in rows])),
        "pooled_heldout_wer": pooled["tuned"] * pct,
        "pooled_heldout_wer_init": pooled["init"] * pct,
        "pooled_heldout_wer_first_pass": pooled["first_pass"] * pct,
    }


# --- the weights file -------------------------------------------------------------------------

PARAM_KEYS = (
    "weights",
    "features",
    "features_file",
    "set",
    "extraction",
    "init",
    "objective",
    "mwer",
    "passes",
    "passes_run",
    "grid",
    "folds",
    "cv_seed",
    "wer",
    "wer_first_pass",
    "wer_init",
    "trace",
    "cv",
)
INITS = ("grid", "zero")


@dataclass
class LoglinearParams:
    """A weights file read back (the keys of :data:`PARAM_KEYS`; ``features_file`` resolved)."""

    weights: Weights
    features_file: Path
    set: str
    extraction: dict | None
    info: dict  # the whole JSON object


def write_params(path: str | Path, obj: dict) -> None:
    """Write a weights file atomically; ``features_file`` relative to its folder."""
    assert tuple(obj) == PARAM_KEYS, list(obj)
    path = Path(path)
    obj = {
        **obj,
        "features_file": os.path.relpath(
            os.path.realpath(obj["features_file"]), os.path.realpath(path.parent)
        ),
    }
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def read_params(path: str | Path) -> LoglinearParams:
    """Read and validate a weights file of ``tune-loglinear``.

    Raises:
        InputError: naming the file: invalid JSON, an unknown or missing key, an unknown
            feature, a feature listed without a weight or weighted without being listed, ``am``
            missing or not 1, a mistyped value.
    """
    path = Path(path)
    with open_text(path) as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    where = at(path)
    if not isinstance(obj, dict):
        raise InputError(f"{where}: a weights file must be a JSON object, got {shown(obj)}")
    unknown = sorted(set(obj) - set(PARAM_KEYS))
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a weights file has "
            f"exactly {', '.join(PARAM_KEYS)} (re-run tune-loglinear)"
        )
    for k in PARAM_KEYS:
        if k not in obj:
            raise InputError(f"{where}: missing field {k!r} (re-run tune-loglinear)")
    weights = Weights.of(obj["weights"], where)
    listed = obj["features"]
    if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
        raise InputError(f"{where}: field 'features' must be a list of names, got {shown(listed)}")
    for n in listed:
        if n not in weights.names:
            raise InputError(f"{where}: missing weight of feature {n!r} (listed in 'features')")
    for n in weights.names:
        if n not in listed:
            raise InputError(f"{where}: feature {n!r} has a weight but is not in 'features'")
    extraction = obj["extraction"]
    if extraction is not None and not isinstance(extraction, dict):
        raise InputError(f"{where}: field 'extraction' must be an object or null")
    if obj["init"] not in INITS:
        raise InputError(f"{where}: field 'init' must be one of {INITS}, got {shown(obj['init'])}")
    if obj["objective"] not in OBJECTIVES:
        raise InputError(
            f"{where}: field 'objective' must be one of {OBJECTIVES}, got {shown(obj['objective'])}"
        )
    if (obj["mwer"] is None) != (obj["objective"] == "wer"):
        raise InputError(
            f"{where}: field 'mwer' must be an object exactly when 'objective' is \"mwer\""
        )
    for k in ("wer", "wer_first_pass", "wer_init"):
        check_number(obj[k], where, k)
    features_file = get_str(obj, "features_file", where, nonempty=True)
    return LoglinearParams(
        weights=weights,
        features_file=(path.parent / features_file).resolve(),
        set=get_str(obj, "set", where, nonempty=True),
        extraction=extraction,
        info=obj,
    )


# --- tune-loglinear -----------------------------------------------------------------------------


@dataclass
class TuneLoglinearConfig:
    features_file: Path | None = field(
        default=None, metadata={"help": "DEV features of extract-features (test is refused)"}
    )
    out: Path | None = field(default=None, metadata={"help": "weights JSON to write"})
    set_name: str = field(default="dev", metadata={"help": "name of the tuning set"})
    features: list[str] = field(
        default_factory=list,
        metadata={"help": "features to weight (default: all in the file); am is always in"},
    )
    grid: list[str] = field(
        default_factory=list,
        metadata={"help": "weight grids NAME=MIN:MAX:STEP overriding the registry's defaults"},
    )
    objective: str = field(
        default="mwer",
        metadata={
            "help": "mwer: L2-regularised minimum expected WER (L-BFGS); wer: coordinate "
            "ascent on corpus WER (overfits dev: rescoring/README.md); both from --init"
        },
    )
    l2: list[float] = field(
        default_factory=lambda: [0.001],
        metadata={
            "help": "mwer: L2 strength(s) toward the start point, per feature standard "
            "deviation; several: the one with the lowest --folds CV WER on dev (inf: the start)"
        },
    )
    mwer_scale: float = field(
        default=1.0, metadata={"help": "mwer: scale of the totals in the hypothesis softmax"}
    )
    passes: int = field(default=5, metadata={"help": "most coordinate-ascent passes"})
    init: str = field(
        default="grid",
        metadata={"help": "start: grid (tune-rescoring's λ x β search) or zero (first pass)"},
    )
    folds: int = field(
        default=5,
        metadata={
            "help": "cross-validation folds on dev (0: none; else >= 2; more than the utterances: one per utterance)"
        },
    )
    cv_seed: int = field(default=0, metadata={"help": "seed of the fold assignment"})
    max_grid_points: int = field(
        default=10_000, metadata={"help": "most values of one feature's grid"}
    )


def _select(fs: FeatureSet, wanted: Sequence[str]) -> list[str]:
    if not wanted:
        return fs.names
    for n in wanted:
        make_feature(n, "--features")
        if n not in fs.names:
            raise InputError(f"{fs.path}: no feature {n!r} (the file has {', '.join(fs.names)})")
    return canonical_order(list(dict.fromkeys([AM, *wanted])))


def tune_loglinear(cfg: TuneLoglinearConfig) -> dict:
    if cfg.features_file is None or cfg.out is None:
        raise InputError("--features-file and --out are required")
    refuse_test_path(cfg.features_file)
    if split_marker(cfg.set_name):
        raise InputError(f"--set-name {cfg.set_name!r} marks a test split; tune on dev only")
    if cfg.passes < 1:
        raise InputError(f"--passes must be >= 1, got {cfg.passes}")
    if cfg.init not in INITS:
        raise InputError(f"--init must be one of {INITS}, got {cfg.init!r}")
    if cfg.max_grid_points < 1:
        raise InputError(f"--max-grid-points must be >= 1, got {cfg.max_grid_points}")
    if cfg.objective not in OBJECTIVES:
        raise InputError(f"--objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if not cfg.l2 or not all(v >= 0 for v in cfg.l2):  # also refuses nan
        raise InputError(f"--l2: one or more numbers >= 0 (or inf), got {cfg.l2}")
    if not (math.isfinite(cfg.mwer_scale) and cfg.mwer_scale > 0):
        raise InputError(f"--mwer-scale must be a positive number, got {cfg.mwer_scale}")
    if cfg.objective == "mwer" and len(cfg.l2) > 1 and cfg.folds == 0:
        raise InputError("--l2 with several values is chosen by cross-validation: --folds >= 2")
    fs = read_features(cfg.features_file)
    if fs.meta is not None and fs.meta.get("nbest"):
        refuse_test_path(fs.meta["nbest"], f"the n-best {cfg.features_file} was extracted from")
    names = _select(fs, cfg.features)
    grids = parse_grids(cfg.grid, names, cfg.max_grid_points)
    arrays = FeatureArrays.build(fs.records, names, lambda h: h.features)
    if cfg.folds == 1 or cfg.folds < 0:
        raise InputError(f"--folds must be 0 or >= 2, got {cfg.folds}")
    if cfg.folds > len(arrays.ids):  # the rule: at most one fold per utterance (leave one out)
        logging.warning(
            "--folds %d: only %d utterances in %s; using %d folds (leave one out)",
            cfg.folds,
            len(arrays.ids),
            cfg.features_file,
            len(arrays.ids),
        )
        cfg = dataclasses.replace(cfg, folds=len(arrays.ids))
    tuner = TunerSpec(
        names=tuple(names),
        grids=grids,
        passes=cfg.passes,
        init=cfg.init,
        objective=cfg.objective,
        l2=tuple(dict.fromkeys(float(v) for v in cfg.l2)),
        scale=cfg.mwer_scale,
        folds=cfg.folds,
        cv_seed=cfg.cv_seed,
    )
    res = tuner.tune(arrays)
    cv = cross_validate(arrays, tuner, cfg.folds, cfg.cv_seed) if cfg.folds else None
    mwer = None
    if res.mwer is not None:
        mwer = {"scale": cfg.mwer_scale, "l2_candidates": [f"{v:g}" for v in tuner.l2], **res.mwer}
    obj = {
        "weights": res.weights.as_dict(),
        "features": names,
        "features_file": str(cfg.features_file),
        "set": cfg.set_name,
        "extraction": (fs.meta or {}).get("extraction"),
        "init": cfg.init,
        "objective": cfg.objective,
        "mwer": mwer,
        "passes": cfg.passes,
        "passes_run": res.passes_run,
        "grid": {
            n: {"min": g.min, "max": g.max, "step": g.step, "points": len(g.values())}
            for n, g in grids.items()
        },
        "folds": cfg.folds,
        "cv_seed": cfg.cv_seed,
        "wer": arrays.wer_of(res.errors),
        "wer_first_pass": arrays.wer_of(res.first_pass_errors),
        "wer_init": arrays.wer_of(res.init_errors),
        "trace": [arrays.wer_of(e) for e in res.trace],
        "cv": cv,
    }
    write_params(cfg.out, obj)
    how = (
        f"{res.passes_run} passes"
        if mwer is None
        else f"mwer, l2 {mwer['l2']}, {mwer['iterations']} iterations"
    )
    logging.info(
        "Tuned %d weights on %s: WER %.2f%% (start %.2f%%, first pass %.2f%%, %s) -> %s",
        len(names) - 1,
        cfg.features_file,
        obj["wer"],
        obj["wer_init"],
        obj["wer_first_pass"],
        how,
        cfg.out,
    )
    if mwer is not None and mwer["l2_cv"]:
        logging.info(
            "l2 chosen by %d-fold CV on %s (pooled held-out WER): %s",
            cfg.folds,
            cfg.set_name,
            ", ".join(f"{k} {v:.2f}%" for k, v in mwer["l2_cv"].items()),
        )
    if cv is not None:
        logging.info(
            "%d-fold CV: in-fold WER %.2f%%, held-out %.2f%% (pooled %.2f%%; start point "
            "%.2f%%, first pass %.2f%%)",
            cfg.folds,
            cv["mean_train_wer"],
            cv["mean_heldout_wer"],
            cv["pooled_heldout_wer"],
            cv["pooled_heldout_wer_init"],
            cv["pooled_heldout_wer_first_pass"],
        )
    return obj


def main_tune(argv: list[str] | None = None) -> None:
    run_cli(
        "tune-loglinear", TuneLoglinearConfig, tune_loglinear, __doc__, argv, errors=(ValueError,)
    )


# --- rescore-loglinear --------------------------------------------------------------------------


@dataclass
class RescoreLoglinearConfig:
    features_file: Path | None = field(
        default=None, metadata={"help": "features of the set to rescore (extract-features)"}
    )
    weights: Path | None = field(default=None, metadata={"help": "tune-loglinear weights JSON"})
    out_dir: Path = field(
        default=Path("exp/rescore"),
        metadata={"help": "output folder (created; locked for the run: one run at a time)"},
    )
    set_name: str = field(default="test", metadata={"help": "name of the set in output names"})
    nlu_checkpoint: Path | None = field(
        default=None,
        metadata={
            "help": "multitask LM for intent/slots of the chosen hypothesis (default: those "
            "stored in the features file)"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "LM batch size (--nlu-checkpoint)"})


def check_compatible(fs: FeatureSet, params: LoglinearParams, weights_path: Path) -> None:
    """Every weighted feature is in the features file, extracted with the same models."""
    for n in params.weights.names:
        if n not in fs.names:
            raise InputError(
                f"{fs.path}: no feature {n!r}, which {weights_path} weights (the file has "
                f"{', '.join(fs.names)}; extract it with the options of the tuning features)"
            )
    mine = (fs.meta or {}).get("extraction")
    theirs = params.extraction
    if mine is None or theirs is None:
        logging.warning(
            "%s: cannot check that %s was extracted with the tuning features' models (no metadata)",
            weights_path,
            fs.path,
        )
        return
    lms = {n[len(LM_PREFIX) :] for n in params.weights.names if n.startswith(LM_PREFIX)}
    used = {
        "lm": {n: v for n, v in mine.get("lm", {}).items() if n in lms},
        "nlu_checkpoint": mine.get("nlu_checkpoint"),
        "lexicon_dir": mine.get("lexicon_dir"),
    }
    want = {
        "lm": {n: v for n, v in theirs.get("lm", {}).items() if n in lms},
        "nlu_checkpoint": theirs.get("nlu_checkpoint"),
        "lexicon_dir": theirs.get("lexicon_dir"),
    }
    needs = {n for f in params.weights.names for n in make_feature(f).needs}
    for key, source in (("nlu_checkpoint", "nlu"), ("lexicon_dir", "lexicon")):
        if source not in needs:  # not weighted: which model gave it does not matter
            used.pop(key)
            want.pop(key)
    if used != want:
        raise InputError(
            f"{fs.path}: extracted with {json.dumps(used, sort_keys=True)}, but the weights "
            f"{weights_path} were tuned on features of {json.dumps(want, sort_keys=True)}; "
            "extract both sets with the same checkpoints"
        )


def best_hyp(record: FeatureRecord, weights: Weights) -> tuple[int, float]:
    """(index, total) of the hypothesis with the highest :func:`score`; ties -> the earlier
    (better first-pass) one, as ``rescore-nbest``'s stable sort."""
    totals = [total_score(h.features, weights) for h in record.hyps]
    j = max(range(len(totals)), key=lambda k: (totals[k], -k))
    return j, totals[j]


def rescore_loglinear(cfg: RescoreLoglinearConfig) -> dict:
    if cfg.features_file is None or cfg.weights is None:
        raise InputError("--features-file and --weights are required")
    check_name_part(cfg.set_name, "--set-name")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    verify_output(cfg.weights)
    params = read_params(cfg.weights)
    with output_folder(cfg.out_dir):
        fs = read_features(cfg.features_file)
        check_compatible(fs, params, cfg.weights)
        chosen, totals = [], []
        for r in fs.records:
            j, total = best_hyp(r, params.weights)
            chosen.append(r.hyps[j])
            totals.append(total)
        nlu_out = None
        if cfg.nlu_checkpoint is not None:
            nlu = load_nlu(cfg.nlu_checkpoint, build_scorer("none"))
            assert nlu is not None
            nlu_out = nlu.predict_nlu([h.words for h in chosen])
        rows = []
        for i, (r, h) in enumerate(zip(fs.records, chosen, strict=True)):
            row: dict[str, Any] = {"id": r.id, "ref": r.ref, "hyp": h.words, "total": totals[i]}
            if nlu_out is not None:
                row["intent"], row["slots"] = nlu_out[i]
            elif h.intent is not None:
                row["intent"], row["slots"] = h.intent, h.slots
            rows.append(row)
        info = {
            "weights": params.weights.as_dict(),
            "weights_file": str(cfg.weights),
            "features_file": str(cfg.features_file),
            "nlu": str(cfg.nlu_checkpoint) if cfg.nlu_checkpoint else "features file",
            "utterances": len(rows),
        }
        s = cfg.set_name
        with OutputSet(cfg.out_dir, f"rescore-{s}", "rescore-loglinear", info) as out:
            write_jsonl(out.dir / f"onebest-{s}.jsonl.gz", rows)
            with atomic_write(out.dir / f"rescore-{s}.json") as f:
                json.dump(info, f, indent=2)
    logging.info("Rescored %d utterances of %s -> %s", len(rows), cfg.features_file, cfg.out_dir)
    return info


def main_rescore(argv: list[str] | None = None) -> None:
    run_cli(
        "rescore-loglinear",
        RescoreLoglinearConfig,
        rescore_loglinear,
        __doc__,
        argv,
        errors=(ValueError,),
    )
