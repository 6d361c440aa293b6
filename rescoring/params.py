"""The rescoring formula, its weights, and ``tuned.json`` (the weights plus their provenance).

Every place that combines scores (the λ/β sweep of ``tune-rescoring``, ``rescore-nbest``,
``rescore-systems``) calls :func:`total_score` with a :class:`RescoreWeights`:

    total = am_score + λ·lm_score + β·num_words

which is :func:`weighted_total`, the one formula the log-linear decoder
(:func:`rescoring.loglinear.score`) also computes, for any features
(:meth:`RescoreWeights.as_features` gives the λ/β weights in its form).

``tuned.json`` is a :class:`TunedParams`: the :class:`RescoreWeights` chosen by
``tune-rescoring`` (``"weights"``) and where they come from: the scorer and its checkpoints,
the n-best and set they were tuned on, the grid searched and the WER they gave there. Every key
is required and typed, and an unknown key is an error (a renamed key must not silently give
λ = 0). Paths inside are stored relative to the folder of ``tuned.json`` and resolved against it
when read, so ``--params`` works from any working directory and the experiment tree can be moved
as a whole.

Usage:
    w = RescoreWeights(lm_scale=0.4, word_bonus=1.5)
    total = total_score(h.am_score, h.lm_score, len(h.words.split()), w)  # floats or arrays
    write_tuned(staging / "tuned.json", params, base=out_dir)   # paths relative to out_dir
    params = read_tuned("exp/rescore/<system>/tuned.json")      # paths resolved
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from common.io import InputError, atomic_write, open_text
from rescoring.fields import at, get_int, get_number, get_str, shown

N = TypeVar("N")  # a float, or a numpy array of them (the vectorised sweep)


def weighted_total(am: N, terms: Iterable[tuple[float, N]]) -> N:
    """``am + w1·x1 + w2·x2 + ...``, added in the order given: the one formula of every
    decoder (:func:`total_score` for λ/β, :func:`rescoring.loglinear.score` for any features).

    Works elementwise on numpy arrays (the sweep's ``(U, N)`` arrays) as on floats, with the
    same operations in the same order, so both give bit-identical totals.
    """
    total = am
    for w, x in terms:
        total = total + w * x
    return total


@dataclass(frozen=True)
class RescoreWeights:
    """The weights of :func:`total_score` (the acoustic score has weight 1)."""

    lm_scale: float = 0.0  # λ
    word_bonus: float = 0.0  # β

    def as_features(self, lm_feature: str) -> dict[str, float]:
        """The same weights as a feature map of the log-linear decoder
        (:class:`rescoring.loglinear.LoglinearWeights`), whose LM feature is ``lm_feature``
        (e.g. ``lm:lm``): ``am`` 1, λ on the LM, β on ``num_words``."""
        return {"am": 1.0, lm_feature: self.lm_scale, "num_words": self.word_bonus}


def total_score(am: N, lm: N, num_words: N, weights: RescoreWeights) -> N:
    """``am + λ·lm + β·num_words`` (:func:`weighted_total` with the λ/β weights)."""
    return weighted_total(am, ((weights.lm_scale, lm), (weights.word_bonus, num_words)))


@dataclass(frozen=True)
class Grid:
    """The λ x β grid ``tune-rescoring`` searched (bounds inclusive)."""

    lm_scale_min: float
    lm_scale_max: float
    lm_scale_step: float
    word_bonus_min: float
    word_bonus_max: float
    word_bonus_step: float
    points: int  # grid points evaluated (one λ only when the scorer has no LM)


@dataclass(frozen=True)
class TunedParams:
    """What ``tune-rescoring`` chose, and the provenance of that choice (``tuned.json``)."""

    weights: RescoreWeights
    scorer: str  # a key of rescoring.scorers.SCORERS
    lm_checkpoint: Path | None  # the scorer's checkpoint (None for --scorer none)
    nlu_checkpoint: Path | None  # multitask LM for intent + slots (None: the scorer's own)
    tuned_on: Path  # the n-best of the tuning set
    set: str  # its name (dev)
    wer: float  # WER (%) on it with the chosen weights
    wer_first_pass: float  # WER (%) on it of the first pass (λ = β = 0)
    grid: Grid


PATH_FIELDS = ("lm_checkpoint", "nlu_checkpoint", "tuned_on")


def _keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base``, on real paths, so ``base/<result>`` finds it again."""
    return os.path.relpath(os.path.realpath(path), os.path.realpath(base))


def write_tuned(path: str | Path, params: TunedParams, base: str | Path) -> None:
    """Write ``params`` as JSON to ``path``, with paths relative to ``base`` (the folder the
    file ends up in: the staging folder of an output set is not it)."""
    d = dataclasses.asdict(params)
    for k in PATH_FIELDS:
        if d[k] is not None:
            d[k] = _relative(d[k], Path(base))
    with atomic_write(path) as f:
        json.dump(d, f, indent=2)
        f.write("\n")


def _exact_keys(obj: object, cls: type, where: str, name: str = "") -> dict:
    """``obj`` must be an object with exactly the fields of ``cls`` (missing ones are reported
    by the typed getters, with the field's name)."""
    what = f"field '{name}'" if name else "a tuned.json"
    if not isinstance(obj, dict):
        raise InputError(f"{where}: {what} must be a JSON object, got {shown(obj)}")
    unknown = sorted(set(obj) - set(_keys(cls)))
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}"
            + (f" in '{name}'" if name else "")
            + f"; {what} has exactly {', '.join(_keys(cls))} (re-run tune-rescoring)"
        )
    return obj


def read_weights(obj: object, where: str, name: str = "weights") -> RescoreWeights:
    """A :class:`RescoreWeights` JSON object, strictly: exactly its keys, finite numbers."""
    obj = _exact_keys(obj, RescoreWeights, where, name)
    return RescoreWeights(
        **{k: get_number(obj, k, where, f"{name}.{k}") for k in _keys(RescoreWeights)}
    )


def read_tuned(path: str | Path) -> TunedParams:
    """Read and validate ``tuned.json``; paths come back resolved against its folder.

    Raises:
        InputError: naming the file and the key for invalid JSON, a missing, unknown or
            mistyped key (also inside ``weights`` and ``grid``), or an unknown scorer.
    """
    from rescoring.scorers import SCORERS

    path = Path(path)
    with open_text(path) as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    where = at(path)
    obj = _exact_keys(obj, TunedParams, where)
    scorer = get_str(obj, "scorer", where)
    if scorer not in SCORERS:
        raise InputError(
            f"{where}: field 'scorer' must be one of {sorted(SCORERS)}, got {scorer!r}"
        )

    def resolve(key: str, nullable: bool) -> Path | None:
        v = get_str(obj, key, where, nonempty=True, nullable=nullable)
        return None if v is None else (path.parent / v).resolve()

    if "weights" not in obj:
        raise InputError(f"{where}: missing field 'weights'")
    weights = read_weights(obj["weights"], where)
    if "grid" not in obj:
        raise InputError(f"{where}: missing field 'grid'")
    g = _exact_keys(obj["grid"], Grid, where, "grid")
    grid = Grid(
        **{k: get_number(g, k, where, f"grid.{k}") for k in _keys(Grid) if k != "points"},
        points=get_int(g, "points", where, "grid.points", minimum=1),
    )
    return TunedParams(
        weights=weights,
        scorer=scorer,
        lm_checkpoint=resolve("lm_checkpoint", nullable=True),
        nlu_checkpoint=resolve("nlu_checkpoint", nullable=True),
        tuned_on=resolve("tuned_on", nullable=False),
        set=get_str(obj, "set", where, nonempty=True),
        wer=get_number(obj, "wer", where),
        wer_first_pass=get_number(obj, "wer_first_pass", where),
        grid=grid,
    )
