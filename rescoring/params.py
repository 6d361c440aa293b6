"""The rescoring formula, its one weights object, and ``tuned.json``.

Every decoder (``tune-rescoring``'s λ/β sweep, ``rescore-nbest``, ``tune-loglinear``,
``rescore-loglinear``) scores a hypothesis by :func:`total_score` with a :class:`Weights`, a
map from feature names (:mod:`rescoring.features`) to weights, ``am`` fixed at 1:

    total = am + sum_f w_f x_f        e.g. am + λ·lm:<scorer> + β·num_words

on floats (one hypothesis) or numpy arrays (:class:`FeatureArrays`, the tuners' padded
``(U, N)`` arrays), bit for bit the same. ``tune-rescoring`` tunes the λ/β weights
(:meth:`Weights.lm_bonus`), ``tune-loglinear`` any features; both files store the same
``"weights"`` object.

``tuned.json`` is a :class:`TunedParams`: the :class:`Weights` chosen by ``tune-rescoring``
(``"weights": {"am": 1, "lm:<scorer>": λ, "num_words": β}``; no LM term for ``--scorer none``)
and where they come from: the scorer and its checkpoints, the n-best and set they were tuned
on, the grid searched and the WER they gave there. Every key is required and typed, and an
unknown key or feature is an error (a renamed key must not silently give λ = 0). Paths inside
are stored relative to the folder of ``tuned.json`` and resolved against it when read, so
``--params`` works from any working directory and the experiment tree can be moved as a whole.

Usage:
    w = Weights.lm_bonus("lm:neural", lm_scale=0.4, word_bonus=1.5)
    total = total_score({"am": -3.2, "lm:neural": -20.1, "num_words": 4}, w)  # or (U, N) arrays
    write_tuned(staging / "tuned.json", params, base=out_dir)   # paths relative to out_dir
    params = read_tuned("exp/rescore/<system>/tuned.json")      # paths resolved
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from common.io import InputError, atomic_write, open_text
from common.wer import num_errors
from rescoring.features import AM, LM_PREFIX, canonical_order, make_feature
from rescoring.fields import at, check_number, get_int, get_number, get_str, shown

NUM_WORDS = "num_words"

N = TypeVar("N")  # a float, or a numpy array of them (the vectorised sweep)


@dataclass(frozen=True)
class Weights:
    """The one weights object of every decoder: feature name -> weight, validated, in canonical
    feature order (:func:`rescoring.features.canonical_order`); ``am`` is required and fixed
    at 1 (the scale of the total). Every name is a registered feature
    (:mod:`rescoring.features`).

    ``tuned.json`` (λ, β of ``tune-rescoring``) holds ``{"am": 1, "lm:<scorer>": λ,
    "num_words": β}`` (:meth:`lm_bonus`); a ``tune-loglinear`` weights file holds any features.
    """

    items: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, weights: Mapping[str, Any], where: str = "weights") -> Weights:
        """Validate a mapping (from JSON or code).

        Raises:
            InputError: prefixed by ``where``: an unknown feature, no ``am``, ``am`` not 1, a
                weight that is not a finite number.
        """
        if not isinstance(weights, Mapping):
            raise InputError(f"{where}: the weights must be an object, got {shown(weights)}")
        for k in weights:
            make_feature(k, where)
        if AM not in weights:
            raise InputError(f"{where}: missing feature '{AM}' (its weight is fixed at 1)")
        values = {k: check_number(v, where, f"weights.{k}") for k, v in weights.items()}
        if values[AM] != 1.0:
            raise InputError(f"{where}: the weight of '{AM}' is fixed at 1, got {values[AM]}")
        return cls(tuple((k, values[k]) for k in canonical_order(list(values))))

    @classmethod
    def zeros(cls, names: Sequence[str]) -> Weights:
        """Weight 0 on every feature of ``names`` but ``am``: the first pass."""
        return cls.of({n: 1.0 if n == AM else 0.0 for n in names})

    @classmethod
    def lm_bonus(cls, lm_feature: str | None, lm_scale: float, word_bonus: float) -> Weights:
        """``am + λ·lm + β·num_words``: the weights of ``tune-rescoring`` / ``rescore-nbest``
        (no LM term when ``lm_feature`` is None)."""
        w = {AM: 1.0, **({lm_feature: lm_scale} if lm_feature else {}), NUM_WORDS: word_bonus}
        return cls.of(w)

    @property
    def names(self) -> list[str]:
        return [k for k, _ in self.items]

    def as_dict(self) -> dict[str, float]:
        return dict(self.items)

    def get(self, name: str) -> float:
        """The weight of ``name`` (0 for a feature without one)."""
        return dict(self.items).get(name, 0.0)

    @property
    def lm_scale(self) -> float:
        """λ: the weight of the LM feature (0 without one; a log-linear file may weight several
        LMs, then this is the first one's)."""
        return next((w for k, w in self.items if k.startswith(LM_PREFIX)), 0.0)

    @property
    def word_bonus(self) -> float:
        """β: the weight of ``num_words``."""
        return self.get(NUM_WORDS)

    def replace(self, name: str, value: float) -> Weights:
        assert name != AM and name in self.names, name
        return Weights(tuple((k, value if k == name else w) for k, w in self.items))


#: The tuners of ``tune-loglinear --objective``: ``wer`` (coordinate ascent on corpus WER) and
#: ``mwer`` (L2-regularised minimum expected WER); rescoring/loglinear.py
OBJECTIVES = ("wer", "mwer")


def total_score(features: Mapping[str, N], weights: Weights) -> N:
    """``am + sum_f w_f x_f``: the one formula of every decoder, on floats (a hypothesis) as on
    numpy arrays (the tuners' ``(U, N)`` arrays).

    Terms are added in canonical order, ``am`` first, with the same operations whatever the
    input, so the array sweep and the per-hypothesis rescoring give bit-identical totals.

    Raises:
        KeyError: a weighted feature missing from ``features`` (readers check this first).
    """
    total = features[AM]
    for name, w in weights.items[1:]:
        total = total + w * features[name]
    return total


def lm_feature(scorer: str) -> str | None:
    """The feature name of ``scorer``'s LM score in ``tuned.json`` (``lm:<scorer>``), or None
    for a scorer without an LM (``none``: λ has no effect)."""
    from rescoring.scorers import SCORERS

    return f"{LM_PREFIX}{scorer}" if SCORERS[scorer].uses_lm else None


def word_errors(ref: str, hyp: str) -> int:
    """Word errors of ``hyp`` against ``ref`` (space-separated), by the toolkit's one alignment."""
    return num_errors(ref.split(), hyp.split())


class _Hyp(Protocol):
    words: str


class _Record(Protocol):
    id: str
    ref: str
    hyps: Sequence[Any]


@dataclass
class FeatureArrays:
    """Padded ``(U, N)`` feature arrays of a set, with word errors: every tuner's input
    (``tune-rescoring``'s λ x β sweep, ``tune-loglinear``'s coordinate ascent)."""

    x: dict[str, np.ndarray]
    valid: np.ndarray  # (U, N) bool
    errors: np.ndarray  # (U, N) int
    ref_words: np.ndarray  # (U,) int
    ids: list[str]

    @classmethod
    def build(
        cls,
        records: Sequence[_Record],
        names: Sequence[str],
        features_of: Callable[[Any], Mapping[str, float]],
    ) -> FeatureArrays:
        """Arrays of the features ``names`` of every hypothesis (``features_of(hyp)``)."""
        n = max(len(r.hyps) for r in records)
        shape = (len(records), n)
        x = {k: np.zeros(shape) for k in names}
        valid = np.zeros(shape, dtype=bool)
        errors = np.zeros(shape, dtype=np.int64)
        for i, r in enumerate(records):
            for j, h in enumerate(r.hyps):
                f = features_of(h)
                for k in names:
                    x[k][i, j] = f[k]
                valid[i, j] = True
                errors[i, j] = word_errors(r.ref, h.words)
        ref_words = np.array([len(r.ref.split()) for r in records], dtype=np.int64)
        return cls(x, valid, errors, ref_words, [r.id for r in records])

    def subset(self, idx: np.ndarray) -> FeatureArrays:
        return FeatureArrays(
            {k: v[idx] for k, v in self.x.items()},
            self.valid[idx],
            self.errors[idx],
            self.ref_words[idx],
            [self.ids[i] for i in idx],
        )

    def choose(self, weights: Weights) -> np.ndarray:
        """Index of the best hypothesis of every utterance, ``(U,)``; ties -> the earlier
        (better first-pass) one."""
        total = np.where(self.valid, total_score(self.x, weights), -np.inf)
        return total.argmax(axis=1)

    def num_errors(self, weights: Weights) -> int:
        chosen = self.choose(weights)
        return int(self.errors[np.arange(len(chosen)), chosen].sum())

    def wer_of(self, errors: int) -> float:
        return 100.0 * errors / max(1, int(self.ref_words.sum()))

    def wer(self, weights: Weights) -> float:
        return self.wer_of(self.num_errors(weights))


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

    weights: Weights  # am, lm:<scorer> (λ; none for --scorer none), num_words (β)
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


def tuned_json(params: TunedParams, base: str | Path | None = None) -> dict:
    """``params`` as the JSON object of ``tuned.json``: the weights as their feature map, paths
    relative to ``base`` (as written) or as they are (``base`` None: run info)."""
    d = dataclasses.asdict(params)
    d["weights"] = params.weights.as_dict()
    for k in PATH_FIELDS:
        if d[k] is not None:
            d[k] = _relative(d[k], Path(base)) if base is not None else str(d[k])
    return d


def write_tuned(path: str | Path, params: TunedParams, base: str | Path) -> None:
    """Write ``params`` as JSON to ``path``, with paths relative to ``base`` (the folder the
    file ends up in: the staging folder of an output set is not it)."""
    with atomic_write(path) as f:
        json.dump(tuned_json(params, base), f, indent=2)
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


def read_lm_bonus_weights(obj: object, scorer: str, where: str) -> Weights:
    """The ``weights`` of a ``tuned.json``: a :class:`Weights` map of exactly ``am``,
    ``lm:<scorer>`` (not for ``--scorer none``) and ``num_words``.

    Raises:
        InputError: naming ``where``: an unknown, missing or extra feature, ``am`` not 1, a
            weight that is not a finite number.
    """
    if isinstance(obj, dict) and {"lm_scale", "word_bonus"} & set(obj):
        raise InputError(
            f"{where}: field 'weights' is in the old form {{lm_scale, word_bonus}}; it is now a "
            "feature map {am, lm:<scorer>, num_words} (re-run tune-rescoring)"
        )
    weights = Weights.of(obj, where)
    want = Weights.lm_bonus(lm_feature(scorer), 0.0, 0.0).names
    if weights.names != want:
        raise InputError(
            f"{where}: field 'weights' of scorer {scorer!r} must weight exactly "
            f"{', '.join(want)}, got {', '.join(weights.names)} (re-run tune-rescoring; "
            "other features are rescore-loglinear's)"
        )
    return weights


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
    weights = read_lm_bonus_weights(obj["weights"], scorer, where)
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
