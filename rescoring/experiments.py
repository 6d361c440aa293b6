"""The experiment matrix of a recipe: which systems exist, what they rescore with, how they are
labelled, which is the headline and what it is compared against.

A recipe declares it once (``recipes/<corpus>/conf/systems.toml``); stage 24 (``rescore-systems``)
and ``make-report`` both read it, so the library knows no corpus's system names.

File format (TOML; paths are relative to the recipe's work dir; system names become folder
and file names, so letters, digits and ``._+-`` only)::

    headline = "mt"                          # the system the targets are checked on
    first_pass = "first_pass"                # the unrescored first pass
    oracle = "oracle"                        # the n-best oracle (the ceiling of any rescorer)
    nlu_checkpoint = "exp/lm/mt/best.pt"     # NLU of the chosen hypothesis, every system
    tune_set = "dev"                         # λ/β are tuned here only
    sets = ["dev", "test"]
    eval_set = "test"                        # optional: targets, paired tests, per-intent table
    seeds = [42, 43, 44]                     # optional: the LM training seeds (see below)
    comparison_note = "The last row is the ablation."   # optional, under the paired table

    [systems.first_pass]
    label = "first pass 1-best"
    select = "total"                         # no LM: the first pass's best hypothesis

    [systems.oracle]
    label = "n-best oracle"
    select = "oracle"                        # the hypothesis with the fewest word errors

    [systems.mt]
    label = "+ multitask LM rescoring"
    lm_checkpoint = "exp/lm/mt/best.pt"      # rescored with this LM, λ/β tuned on tune_set

    [systems.nlu_features]
    label = "+ log-linear decoder with NLU features"
    kind = "loglinear"                       # rescoring/loglinear.py, weights tuned on tune_set
    feature_lms = { mt = "exp/lm/mt/best.pt" }   # lm:<name> features; NLU features from
    lexicon_dir = "data/lang/lexicons"       # nlu_checkpoint; slot_in_lexicon from these lists
    folds = 5                                # cross-validation folds on tune_set
    objective = "mwer"                       # tune-loglinear --objective (mwer or wer)
    # features = ["am", "lm:mt", "num_words"]  # optional: weight only these (an ablation)
    nlu_features_from = "exp/lm/mt/best.pt"  # optional: NLU features of this model instead

    [systems.biased_mt]
    label = "biased first pass + multitask LM"
    lm_checkpoint = "exp/lm/mt/best.pt"
    nbest_dir = "exp/asr/x/decode_biased"    # n-best lists of another decoding (default:
                                             # rescore-systems --nbest-dir)

    [[comparisons]]                          # paired bootstrap: b against a
    a = "first_pass"
    b = "mt"

    [[targets]]                              # RESULTS.md "Targets": headline vs `against`
    against = "first_pass"
    metric = "rare_wer"
    min_relative_reduction = 5.0             # percent; 0 = "lower" is enough
    # max_p_value = 0.05                     # optional: and the paired test's p (the share
                                             # of resamples where b is not better) below it
    # system = "mt"                          # optional: another system than the headline
    # set = "test_unseen_engine"             # optional: another set than the evaluation set

    [[limits]]                               # RESULTS.md "Targets": absolute bounds
    system = "biased_mt"                     # on the evaluation set (or `set = ...`)
    metric = "rare_wer"
    max_value = 65.0                         # met when the value is <= max_value

A system with an LM is tuned (``select`` must stay ``total``); one without is the first pass
(``total``) or the oracle. **Seeds**: a system whose ``lm_checkpoint`` (or a ``feature_lms``
path) contains ``{seed}`` is run once per entry of ``seeds``, with ``{seed}`` replaced, into
``<out-dir>/<system>/seed<N>/``; the report gives its seed mean, the spread and the per-seed
values, and tests it against other systems by resampling seeds and utterances. An unknown key,
a wrong type or a name that is not declared is an error naming the file and the key.

**Evaluation set**: ``eval_set`` (default: ``test`` if it is one of ``sets``, else the last set
other than ``tune_set``) carries the targets, the paired tests and the per-intent table; further
sets are reported beside it. :func:`load_experiments` can replace ``sets`` and drop systems
(``exclude``) for one run without editing the file.

Usage:
    exps = load_experiments("conf/systems.toml")
    exps = load_experiments("conf/systems.toml", sets=("dev", "test", "test_unseen_engine"))
    for name, system in exps.systems.items(): ...
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.io import InputError
from rescoring.features import LM_PREFIX, make_feature
from rescoring.outputs import NAME_RE
from rescoring.params import OBJECTIVES

SELECT_CHOICES = ("total", "oracle")
#: The placeholder of an LM path that makes a system seeded.
SEED_FIELD = "{seed}"
KINDS = ("nbest", "loglinear")
TARGET_METRICS = ("wer", "rare_wer", "common_wer")


@dataclass(frozen=True)
class System:
    """One row of the results: a way to choose a hypothesis from the n-best list.

    Attributes:
        name: folder name under the rescore dir and key in results.json.
        label: the row label in RESULTS.md.
        lm_checkpoint: the rescoring LM; ``None`` for a system without LM (1-best, oracle).
        select: ``total`` (best total score) or ``oracle`` (fewest word errors).
        nbest_dir: the decode folder of this system's n-best lists (``nbest-<set>.jsonl.gz``);
            ``None``: the one ``rescore-systems --nbest-dir`` gives (the unbiased first pass).
    """

    name: str
    label: str
    lm_checkpoint: str | None = None
    select: str = "total"
    nbest_dir: str | None = None
    #: ``loglinear``: a feature-based decoder (rescoring/loglinear.py) instead of am + λ·lm + β·len
    kind: str = "nbest"
    #: loglinear: the LMs of its ``lm:<name>`` features, name -> checkpoint
    feature_lms: dict[str, str] | None = None
    #: loglinear: the slot lexicons of its ``slot_in_lexicon`` feature (extract-slot-lexicon)
    lexicon_dir: str | None = None
    #: loglinear: cross-validation folds on the tune set (0: none)
    folds: int = 5
    #: loglinear: ``tune-loglinear --objective`` (``mwer``, the default: regularised minimum
    #: expected WER; ``wer``: coordinate ascent)
    objective: str = "mwer"
    #: loglinear: the features it weights (``tune-loglinear --features``; ``am`` always in);
    #: ``None``: every feature extracted (an ablation names a subset)
    features: tuple[str, ...] | None = None
    #: loglinear: the multitask model of its NLU features (may name ``{seed}``); default: the
    #: matrix's ``nlu_checkpoint``
    nlu_features_from: str | None = None

    @property
    def rescored(self) -> bool:
        """Has an LM whose weights are tuned on the tune set."""
        return self.lm_checkpoint is not None or self.kind == "loglinear"

    @property
    def seeded(self) -> bool:
        """Its LM paths name ``{seed}``: it is run once per seed of the matrix."""
        paths = [self.lm_checkpoint or "", self.nlu_features_from or ""]
        paths += (self.feature_lms or {}).values()
        return any(SEED_FIELD in p for p in paths)

    def for_seed(self, seed: int | None) -> System:
        """This system with ``{seed}`` replaced in its LM paths (itself for ``None``)."""
        if seed is None:
            return self

        def sub(p: str | None) -> str | None:
            return None if p is None else p.replace(SEED_FIELD, str(seed))

        lms = None if self.feature_lms is None else {k: sub(v) for k, v in self.feature_lms.items()}
        return dataclasses.replace(
            self,
            lm_checkpoint=sub(self.lm_checkpoint),
            feature_lms=lms,
            nlu_features_from=sub(self.nlu_features_from),
        )


@dataclass(frozen=True)
class Comparison:
    """A paired-bootstrap comparison: system ``b`` against system ``a`` on the same utterances."""

    a: str
    b: str


@dataclass(frozen=True)
class Target:
    """``system`` (default: the headline) must lower ``metric`` on ``set`` (default: the
    evaluation set) by at least this much relative to ``against``; with ``max_p_value``, the
    paired test's p (``p_b_better``: the share of resamples in which ``system`` is not better)
    must also be below it (no test: not met)."""

    against: str
    metric: str
    min_relative_reduction: float = 0.0
    system: str | None = None
    set: str | None = None
    max_p_value: float | None = None


@dataclass(frozen=True)
class Limit:
    """An absolute bound: ``system``'s ``metric`` on ``set`` (default: the evaluation set) must
    be <= ``max_value`` (or < it with ``strict``)."""

    system: str
    metric: str
    max_value: float
    strict: bool = False
    set: str | None = None


@dataclass(frozen=True)
class Experiments:
    """The whole matrix (see the module docstring for the file format)."""

    systems: dict[str, System]
    headline: str
    first_pass: str
    oracle: str
    nlu_checkpoint: str | None = None
    tune_set: str = "dev"
    sets: tuple[str, ...] = ("dev", "test")
    comparisons: tuple[Comparison, ...] = ()
    targets: tuple[Target, ...] = ()
    limits: tuple[Limit, ...] = ()
    comparison_note: str | None = None
    #: the LM training seeds of the seeded systems (``{seed}`` in their LM paths)
    seeds: tuple[int, ...] = ()
    #: the set the report's targets, paired tests and per-intent table are on; ``None``:
    #: :func:`default_eval_set` (resolved on construction)
    eval_set: str | None = None
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.eval_set is None:
            object.__setattr__(self, "eval_set", default_eval_set(self.sets, self.tune_set))

    def seeds_of(self, name: str) -> tuple[int | None, ...]:
        """The seeds a system is run with: ``(None,)`` for one without ``{seed}``."""
        return self.seeds if self.systems[name].seeded else (None,)

    @property
    def rescoring_systems(self) -> list[str]:
        """Systems with an LM, in declaration order."""
        return [n for n, s in self.systems.items() if s.rescored]

    def label(self, name: str) -> str:
        return self.systems[name].label


def default_eval_set(sets: tuple[str, ...], tune_set: str) -> str:
    """The evaluation set of a matrix without ``eval_set``: ``test`` if it is one of ``sets``
    (so that adding a further set does not move it), else the last of ``sets`` other than
    ``tune_set`` (``tune_set`` itself if there is no other)."""
    if "test" in sets and tune_set != "test":
        return "test"
    return next((s for s in reversed(sets) if s != tune_set), tune_set)


def _fields(cls: type, obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a table")
    known = {f.name for f in dataclasses.fields(cls) if f.init} - {"name", "path", "systems"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return obj


def _typed(value: Any, tp: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        names = tp.__name__ if isinstance(tp, type) else " or ".join(t.__name__ for t in tp)
        raise InputError(f"{where}: expected {names}, got {value!r}")
    return value


def parse_experiments(obj: dict[str, Any], source: str = "<matrix>") -> Experiments:
    """Build and validate :class:`Experiments` from a parsed TOML document.

    Raises:
        InputError: naming ``source`` and the key for an unknown key, a wrong type, or a
            reference to a system that is not declared.
    """
    top = dict(_fields(Experiments, {k: v for k, v in obj.items() if k != "systems"}, source))
    systems_obj = obj.get("systems")
    if not isinstance(systems_obj, dict) or not systems_obj:
        raise InputError(f"{source}: no [systems.<name>] tables")
    systems = {}
    for name, sobj in systems_obj.items():
        where = f"{source}: [systems.{name}]"
        if not NAME_RE.match(name):
            raise InputError(
                f"{where}: a system name becomes a folder and file name: letters, digits and "
                "'._+-' only"
            )
        s = _fields(System, sobj, where)
        for k in (
            "label",
            "lm_checkpoint",
            "select",
            "nbest_dir",
            "kind",
            "lexicon_dir",
            "nlu_features_from",
            "objective",
        ):
            if k in s:
                _typed(s[k], str, f"{where} {k}")
        if s.get("kind", "nbest") not in KINDS:
            raise InputError(f"{where} kind: one of {', '.join(KINDS)}")
        if s.get("kind", "nbest") == "loglinear":
            lms = _typed(s.get("feature_lms"), dict, f"{where} feature_lms")
            if not lms or not all(isinstance(v, str) and NAME_RE.match(k) for k, v in lms.items()):
                raise InputError(
                    f"{where} feature_lms: a table name = checkpoint path (one or more)"
                )
            if "lm_checkpoint" in s:
                raise InputError(
                    f"{where}: a loglinear system takes feature_lms, not lm_checkpoint"
                )
            f = _typed(s.get("folds", 5), int, f"{where} folds")
            if f < 0 or f == 1:
                raise InputError(f"{where} folds: 0 (none) or >= 2")
            if s.get("objective", "mwer") not in OBJECTIVES:
                raise InputError(f"{where} objective: one of {', '.join(OBJECTIVES)}")
            if "features" in s:
                names = _typed(s["features"], list, f"{where} features")
                for n in names:
                    make_feature(_typed(n, str, f"{where} features"), f"{where} features")
                    if n.startswith(LM_PREFIX) and n[len(LM_PREFIX) :] not in lms:
                        raise InputError(f"{where} features: {n!r} names no LM of feature_lms")
                if not names:
                    raise InputError(f"{where} features: one or more feature names")
                s = {**s, "features": tuple(names)}
        else:
            for k in (
                "feature_lms",
                "lexicon_dir",
                "folds",
                "nlu_features_from",
                "objective",
                "features",
            ):
                if k in s:
                    raise InputError(f'{where}: {k} needs kind = "loglinear"')
        if s.get("select", "total") not in SELECT_CHOICES:
            raise InputError(f"{where} select: one of {', '.join(SELECT_CHOICES)}")
        if "label" not in s:
            raise InputError(f"{where}: missing label")
        tuned = "lm_checkpoint" in s or s.get("kind") == "loglinear"
        if tuned and s.get("select", "total") != "total":
            raise InputError(
                f"{where}: a system with an lm_checkpoint is tuned (as is a loglinear one): "
                'select must be "total"'
            )
        systems[name] = System(name=name, **s)
    for k in ("headline", "first_pass", "oracle"):
        if k not in top:
            raise InputError(f"{source}: missing {k}")
    for k in (
        "headline",
        "first_pass",
        "oracle",
        "nlu_checkpoint",
        "tune_set",
        "eval_set",
        "comparison_note",
    ):
        if k in top:
            _typed(top[k], str, f"{source}: {k}")
    comparisons = []
    for i, c in enumerate(_typed(top.pop("comparisons", []), list, f"{source}: comparisons")):
        comparisons.append(Comparison(**_fields(Comparison, c, f"{source}: comparisons[{i}]")))
    targets = []
    for i, t in enumerate(_typed(top.pop("targets", []), list, f"{source}: targets")):
        where = f"{source}: targets[{i}]"
        t = _fields(Target, t, where)
        if t.get("metric") not in TARGET_METRICS:
            raise InputError(f"{where} metric: one of {', '.join(TARGET_METRICS)}")
        _typed(
            t.get("min_relative_reduction", 0.0), (int, float), f"{where} min_relative_reduction"
        )
        if "max_p_value" in t:
            p = _typed(t["max_p_value"], (int, float), f"{where} max_p_value")
            if not 0.0 < p <= 1.0:
                raise InputError(f"{where} max_p_value: must be in (0, 1], got {p}")
        for k in ("system", "set"):
            if k in t:
                _typed(t[k], str, f"{where} {k}")
        targets.append(Target(**t))
    limits = []
    for i, t in enumerate(_typed(top.pop("limits", []), list, f"{source}: limits")):
        where = f"{source}: limits[{i}]"
        t = _fields(Limit, t, where)
        for k in ("system", "metric", "max_value"):
            if k not in t:
                raise InputError(f"{where}: missing {k}")
        _typed(t["system"], str, f"{where} system")
        if t["metric"] not in TARGET_METRICS:
            raise InputError(f"{where} metric: one of {', '.join(TARGET_METRICS)}")
        _typed(t["max_value"], (int, float), f"{where} max_value")
        _typed(t.get("strict", False), bool, f"{where} strict")
        if "set" in t:
            _typed(t["set"], str, f"{where} set")
        limits.append(Limit(**t))
    seeds = tuple(_typed(top.pop("seeds", []), list, f"{source}: seeds"))
    for i, v in enumerate(seeds):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InputError(f"{source}: seeds[{i}]: a seed is an integer >= 0, got {v!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{source}: seeds: a seed is named twice")
    for name, system in systems.items():
        if system.seeded and not seeds:
            raise InputError(
                f"{source}: [systems.{name}] names {SEED_FIELD} in an LM path, but the matrix "
                "has no seeds = [...]"
            )
    if SEED_FIELD in str(top.get("nlu_checkpoint", "")):
        raise InputError(
            f"{source}: nlu_checkpoint: one checkpoint labels every system; {SEED_FIELD} is "
            "for the systems' LM paths"
        )
    sets = tuple(_typed(top.pop("sets", ["dev", "test"]), list, f"{source}: sets"))
    for i, s in enumerate(sets):
        if not isinstance(s, str) or not NAME_RE.match(s):
            raise InputError(
                f"{source}: sets[{i}]: a set name (letters, digits, '._+-'), got {s!r}"
            )
    if len(set(sets)) != len(sets):
        raise InputError(f"{source}: sets: a set is named twice")
    exps = Experiments(
        systems=systems,
        comparisons=tuple(comparisons),
        targets=tuple(targets),
        limits=tuple(limits),
        sets=sets,
        seeds=seeds,
        **top,
    )
    refs = [(exps.headline, "headline"), (exps.first_pass, "first_pass"), (exps.oracle, "oracle")]
    refs += [(c.a, f"comparisons[{i}].a") for i, c in enumerate(exps.comparisons)]
    refs += [(c.b, f"comparisons[{i}].b") for i, c in enumerate(exps.comparisons)]
    refs += [(t.against, f"targets[{i}].against") for i, t in enumerate(exps.targets)]
    refs += [(t.system, f"targets[{i}].system") for i, t in enumerate(exps.targets) if t.system]
    refs += [(t.system, f"limits[{i}].system") for i, t in enumerate(exps.limits)]
    for name, where in refs:
        if name not in systems:
            raise InputError(f"{source}: {where} names {name!r}, which is not a declared system")
    if exps.tune_set not in exps.sets:
        raise InputError(f"{source}: tune_set {exps.tune_set!r} is not one of sets {list(sets)}")
    if exps.eval_set not in exps.sets:
        raise InputError(f"{source}: eval_set {exps.eval_set!r} is not one of sets {list(sets)}")
    if exps.eval_set == exps.tune_set and len(exps.sets) > 1:
        raise InputError(
            f"{source}: eval_set {exps.eval_set!r} is the tune_set: λ/β are tuned there; name "
            f"another of sets {list(sets)}"
        )
    if systems[exps.oracle].select != "oracle":
        raise InputError(f'{source}: the oracle system {exps.oracle!r} must have select = "oracle"')
    return exps


def exclude_systems(exps: Experiments, names: tuple[str, ...], source: str) -> Experiments:
    """``exps`` without the systems ``names``, and without every comparison, target and limit
    that names one of them.

    No field of a system names another system (``nbest_dir``, ``feature_lms`` and
    ``nlu_features_from`` are paths), so the remaining systems run as declared.

    Raises:
        InputError: naming ``source`` and the name, for a name that is not a declared system
            or is the headline, first-pass or oracle system.
    """
    for name in names:
        if name not in exps.systems:
            raise InputError(
                f"{source}: excluded system {name!r} is not a declared system "
                f"(declared: {', '.join(exps.systems)})"
            )
        for key in ("headline", "first_pass", "oracle"):
            if getattr(exps, key) == name:
                raise InputError(
                    f"{source}: system {name!r} is the matrix's {key}: it cannot be excluded"
                )
    drop = set(names)
    return dataclasses.replace(
        exps,
        systems={n: s for n, s in exps.systems.items() if n not in drop},
        comparisons=tuple(c for c in exps.comparisons if not {c.a, c.b} & drop),
        targets=tuple(t for t in exps.targets if not {t.against, t.system} & drop),
        limits=tuple(t for t in exps.limits if t.system not in drop),
    )


def load_experiments(
    path: str | Path,
    seeds: tuple[int, ...] = (),
    sets: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> Experiments:
    """Read a recipe's ``systems.toml``.

    Args:
        path: the matrix.
        seeds: if non-empty, replace its ``seeds`` (the recipe's ``lm_seeds``, which differ per
            preset).
        sets: if non-empty, replace its ``sets`` (validated as the file's: ``tune_set`` and
            ``eval_set`` must be among them).
        exclude: systems left out of this run, with every comparison, target and limit that
            names them (:func:`exclude_systems`).

    Raises:
        InputError: the file is missing, not TOML (with its line), or not a valid matrix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (the recipe's experiment matrix)")
    try:
        obj = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: invalid TOML ({e})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if seeds:
        obj["seeds"] = list(seeds)
    if sets:
        obj["sets"] = list(sets)
    source = str(path) + (f" (sets replaced by {list(sets)})" if sets else "")
    exps = parse_experiments(obj, source)
    if exclude:
        exps = exclude_systems(exps, tuple(exclude), str(path))
    return dataclasses.replace(exps, path=path)
