"""Per-hypothesis features for the log-linear rescorer, and ``extract-features``.

Each feature is a class in one registry (:data:`FEATURES`, by name). Features are computed
batched over all hypotheses of all utterances: every distinct sentence is scored once by each
LM and read once by the NLU model, then each feature is a lookup (batched extraction equals
one utterance at a time; tested).

Features (``x`` of one hypothesis; the log-linear total is ``sum_f w_f x_f``, ``w_am = 1``):

==================== ===================================================================
``am``               the first-pass score: ``am_score + context_score + length_score +
                     fusion_score`` (the score the first pass ranked by;
                     ``rescoring.nbest.Hyp.first_pass_score``)
``lm:<name>``        natural-log probability of the sentence (with end of sentence) under the
                     LM ``<name>`` (``--lm <name>=<checkpoint>``, through ``rescoring.scorers``)
``num_words``        number of words
``context``          the biasing bonus ``context_score`` of a biased first pass (0 when absent).
                     It is already inside ``am``: its weight moves the biasing weight to
                     ``1 + w_context``
``fusion``           the LM shallow-fusion score ``fusion_score`` of a fused first pass (0 when
                     absent). Also inside ``am``: its weight moves the fusion LM's weight to
                     ``1 + w_fusion`` times the scales the first pass was tuned with
``intent_conf``      posterior of the intent the multitask LM predicts (its max), in (0, 1]
``slot_logp``        log-probability of the slot tagger's best valid BIO path, **summed over
                     the words** (``<= 0``; 0 for an empty hypothesis; ``rescoring.nlu_scores``)
``slot_logp_per_word`` ``slot_logp / num_words`` (0 for an empty hypothesis): the same
                     confidence without the length, so it does not compete with ``num_words``
``num_slots``        number of predicted slot spans (``rescoring.metrics.slot_spans``, the
                     slot-F1 rule)
``slot_in_lexicon``  share of the predicted slot spans whose words are a phrase of the training
                     lexicon of the span's slot type (``<lexicon-dir>/slot-<type>.txt``, from
                     ``extract-slot-lexicon``); **1.0 when there is no span** (no predicted value
                     is unknown); pair it with ``num_slots`` when "no slot at all" must be told
                     apart. A slot type without a lexicon file counts as an empty lexicon (its
                     spans are not in it; the types are logged and listed in the metadata)
==================== ===================================================================

The NLU features need ``--nlu-checkpoint`` (a multitask ``train-lm`` checkpoint), and
``slot_in_lexicon`` also ``--lexicon-dir``. By default every feature the inputs allow is
extracted; ``tune-loglinear --features`` chooses among them.

Usage:
    extract-features --nbest exp/asr/<model>/decode/nbest-dev.jsonl.gz \\
        --lm lm=exp/lm/pretrain/best.pt mt=exp/lm/pretrained_multitask_rwm/best.pt \\
        --nlu-checkpoint exp/lm/pretrained_multitask_rwm/best.pt \\
        --lexicon-dir data/lang/lexicons --out exp/rescore/<system>/features-dev.jsonl.gz

OUTPUTS:
    --out           JSONL.gz, one utterance per line: ``{"id", "ref", "hyps": [{"words",
                    "features": {name: value}, ["intent", "slots"]}]}``, hypotheses in
                    first-pass order; ``intent``/``slots`` (the NLU model's reading) when
                    ``--nlu-checkpoint`` is given. Written atomically; every value finite
    <out>.json      metadata: feature names, the n-best, LM and NLU checkpoints, lexicon folder,
                    counts, timing and the sha256 of --out (a reader refuses a pair that does not
                    match: "written by different runs")

A feature value that is not a finite number (an LM scoring NaN) stops the run naming the n-best
file, the utterance and the feature; a features file read back is type-checked the same way
(:func:`read_features`: NaN, a missing or an unknown feature name ``file:line (utt id)``).
"""

from __future__ import annotations

import abc
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from common.cli import run_cli
from common.io import CheckpointError, InputError, atomic_write, read_jsonl, write_jsonl
from common.lexicon import read_lexicon
from rescoring.fields import at, check_number, first_seen, get_list, get_str, shown
from rescoring.nbest import DEFAULT_MAX_HYPS, Hyp, NbestRecord, load_nbest
from rescoring.nlu_scores import NluModel, NluScore, nlu_from_json, nlu_to_json
from rescoring.outputs import sha256, verify_output
from rescoring.scorers import SCORERS, ScoreCache, Scorer, build_scorer, cached_scores, score_cache

AM = "am"
LM_PREFIX = "lm:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
META_SUFFIX = ".json"


class NluSource(Protocol):
    """What the NLU features read: :class:`rescoring.nlu_scores.NluModel` (or a stand-in)."""

    def score(self, sentences: Sequence[str]) -> list[NluScore]: ...


class SlotLexicon:
    """The training slot lexicons ``slot-<type>.txt`` of a folder (``extract-slot-lexicon``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: no such folder (--lexicon-dir)")
        files = sorted(self.folder.glob("slot-*.txt"))
        if not files:
            raise InputError(
                f"{self.folder}: no slot-<type>.txt lexicons (--lexicon-dir must be the "
                "extract-slot-lexicon output folder)"
            )
        self.phrases = {
            f.name[len("slot-") : -len(".txt")]: {p for p, _ in read_lexicon(f, None)}
            for f in files
        }
        self.missing: set[str] = set()  # slot types asked about that have no lexicon file

    def contains(self, slot_type: str, value: str) -> bool:
        if slot_type not in self.phrases:
            self.missing.add(slot_type)
            return False
        return value in self.phrases[slot_type]


@dataclass
class Context:
    """Per-sentence results of the models, computed once for all hypotheses (batched)."""

    lm: dict[str, dict[str, float]] = field(default_factory=dict)  # lm name -> sentence -> logp
    nlu: dict[str, NluScore] = field(default_factory=dict)
    lexicon: SlotLexicon | None = None
    _spans: dict[str, Counter] = field(default_factory=dict)

    def spans(self, words: str) -> Counter:
        """Predicted slot spans ``(type, value) -> count`` of a sentence (the slot-F1 rule)."""
        if words not in self._spans:
            from rescoring.metrics import slot_spans

            self._spans[words] = slot_spans(words.split(), list(self.nlu[words].tags))
        return self._spans[words]


class Feature(abc.ABC):
    """One per-hypothesis feature. ``needs``: the sources it reads (``lm``, ``nlu``,
    ``lexicon``); ``grid``: the default weight grid of ``tune-loglinear`` (min, max, step)."""

    name: ClassVar[str] = ""
    family: ClassVar[bool] = False  # a family of features named ``<name>:<arg>`` (``lm:<x>``)
    needs: ClassVar[tuple[str, ...]] = ()
    grid: ClassVar[tuple[float, float, float]] = (-5.0, 5.0, 0.25)
    help: ClassVar[str] = ""

    def __init__(self, arg: str | None = None):
        self.arg = arg

    @property
    def full_name(self) -> str:
        return f"{self.name}:{self.arg}" if self.family else self.name

    @abc.abstractmethod
    def value(self, hyp: Hyp, ctx: Context) -> float: ...


#: The registry, in the canonical order of a weight vector (``am`` first).
FEATURES: dict[str, type[Feature]] = {}


def register(cls: type[Feature]) -> type[Feature]:
    FEATURES[cls.name] = cls
    return cls


@register
class Am(Feature):
    name = AM
    grid = (1.0, 1.0, 1.0)  # fixed at 1: the scale of the log-linear total
    help = "first-pass score (am_score + context_score + length_score + fusion_score)"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return hyp.first_pass_score


@register
class LM(Feature):
    name = "lm"
    family = True
    needs = ("lm",)
    grid = (0.0, 1.5, 0.05)  # tune-rescoring's default λ grid
    help = "log-probability under the LM <name>"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return ctx.lm[self.arg][hyp.words]


@register
class NumWords(Feature):
    name = "num_words"
    grid = (-1.0, 3.0, 0.25)  # tune-rescoring's default β grid
    help = "number of words"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return float(len(hyp.words.split()))


class FirstPassTerm(Feature):
    """A term the first pass already added to ``am`` (read from the n-best record; 0 when the
    first pass had none): its weight moves that term's weight to ``1 + w``."""

    attr: ClassVar[str] = ""
    grid = (-1.0, 1.0, 0.1)

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return getattr(hyp, self.attr) or 0.0


@register
class ContextBonus(FirstPassTerm):
    name, attr = "context", "context_score"
    help = "biasing bonus of the first pass (0 when absent; already inside am)"


@register
class FusionScore(FirstPassTerm):
    name, attr = "fusion", "fusion_score"
    help = "LM shallow-fusion score of the first pass (0 when absent; already inside am)"


@register
class IntentConf(Feature):
    name = "intent_conf"
    needs = ("nlu",)
    grid = (-10.0, 10.0, 0.5)
    help = "posterior of the predicted intent"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return ctx.nlu[hyp.words].intent_conf


@register
class SlotLogp(Feature):
    name = "slot_logp"
    needs = ("nlu",)
    grid = (-2.0, 2.0, 0.1)
    help = "log-probability of the best valid BIO path (sum over words)"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return ctx.nlu[hyp.words].slot_logp


@register
class SlotLogpPerWord(Feature):
    name = "slot_logp_per_word"
    needs = ("nlu",)
    grid = (-5.0, 5.0, 0.25)
    help = "slot_logp / num_words (0 for an empty hypothesis)"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        n = len(hyp.words.split())
        return ctx.nlu[hyp.words].slot_logp / n if n else 0.0


@register
class NumSlots(Feature):
    name = "num_slots"
    needs = ("nlu",)
    grid = (-3.0, 3.0, 0.25)
    help = "number of predicted slot spans"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        return float(sum(ctx.spans(hyp.words).values()))


@register
class SlotInLexicon(Feature):
    name = "slot_in_lexicon"
    needs = ("nlu", "lexicon")
    grid = (-10.0, 10.0, 0.5)
    help = "share of predicted slot spans found in slot-<type>.txt (1.0 without spans)"

    def value(self, hyp: Hyp, ctx: Context) -> float:
        spans = ctx.spans(hyp.words)
        total = sum(spans.values())
        if total == 0:
            return 1.0
        assert ctx.lexicon is not None
        found = sum(c for (t, v), c in spans.items() if ctx.lexicon.contains(t, v))
        return found / total


def make_feature(name: str, where: str = "") -> Feature:
    """The feature called ``name`` (``lm:<x>`` for the LM family).

    Raises:
        InputError: an unknown name (prefixed by ``where``).
    """
    kind, sep, arg = name.partition(":") if isinstance(name, str) else ("", "", "")
    cls = FEATURES.get(kind)
    ok = cls is not None and (
        (cls.family and sep and NAME_RE.match(arg)) or (not cls.family and not sep)
    )
    if not ok:
        known = ", ".join(f"{k}:<name>" if c.family else k for k, c in FEATURES.items())
        raise InputError(
            f"{where + ': ' if where else ''}unknown feature {shown(name)}; known: {known}"
        )
    return cls(arg if cls.family else None)  # type: ignore[misc]


def canonical_order(names: Sequence[str]) -> list[str]:
    """``names`` in registry order (``am``, ``lm:*`` by name, ``num_words``, ...)."""
    kinds = list(FEATURES)
    return sorted(names, key=lambda n: (kinds.index(n.partition(":")[0]), n))


def default_grid(name: str) -> tuple[float, float, float]:
    return make_feature(name).grid


@dataclass
class Sources:
    """What the features are computed from."""

    lms: dict[str, Scorer] = field(default_factory=dict)  # lm name -> scorer
    nlu: NluSource | None = None
    lexicon: SlotLexicon | None = None

    def available(self) -> list[str]:
        """Every feature these sources allow, in canonical order."""
        have = {"lm"} if self.lms else set()
        have |= {"nlu"} if self.nlu is not None else set()
        have |= {"lexicon"} if self.lexicon is not None else set()
        names = []
        for kind, cls in FEATURES.items():
            if not set(cls.needs) <= have:
                continue
            names += [f"{kind}:{n}" for n in self.lms] if cls.family else [kind]
        return canonical_order(names)


@dataclass
class FeatureHyp:
    words: str
    features: dict[str, float]
    intent: str | None = None  # the NLU model's reading, when extracted with one
    slots: list[str] | None = None

    def to_json(self) -> dict:
        d: dict[str, Any] = {"words": self.words, "features": self.features}
        if self.intent is not None:
            d["intent"], d["slots"] = self.intent, self.slots
        return d


@dataclass
class FeatureRecord:
    id: str
    ref: str
    hyps: list[FeatureHyp]

    def to_json(self) -> dict:
        return {"id": self.id, "ref": self.ref, "hyps": [h.to_json() for h in self.hyps]}


def build_context(
    sentences: Sequence[str], sources: Sources, needs: set[str], cache: ScoreCache | None = None
) -> Context:
    """Score every sentence once with each LM (through ``cache`` if given) and read it once
    with the NLU model (batched). An LM that is the NLU model's own checkpoint (the same
    :meth:`~rescoring.nlu_scores.NluModel.lm_identity`; ``nlu_features``' ``mt``) is scored in
    the NLU model's encoder pass when neither is cached: the same floats, one pass fewer."""
    ctx = Context(lexicon=sources.lexicon)
    unique = sorted(set(sentences))
    joint = _joint_pass(sources, unique) if "lm" in needs else None
    if "lm" in needs:
        for name, scorer in sources.lms.items():
            if joint is not None and joint.name == name:
                scores, hit = _through(cache, scorer.identity(), unique, joint.lm_scores)
            else:
                scores, hit = cached_scores(scorer, unique, cache)
            if hit:
                logging.info("LM %s: %d sentences' scores from the score cache", name, len(unique))
            ctx.lm[name] = dict(zip(unique, scores, strict=True))
    if sources.nlu is not None:
        compute = joint.readings if joint is not None and joint.done else None
        ctx.nlu = dict(zip(unique, nlu_readings(sources.nlu, unique, cache, compute), strict=True))
    return ctx


class _JointPass:
    """The LM scores and NLU readings of one checkpoint from one pass, run on first use."""

    def __init__(self, name: str, nlu: Any, sentences: Sequence[str]):
        self.name, self.nlu, self.sentences = name, nlu, sentences
        self.done = False
        self._scores: list[float] = []
        self._readings: list[NluScore] = []

    def lm_scores(self) -> list[float]:
        self._scores, self._readings = self.nlu.score_with_lm(self.sentences)
        self.done = True
        return self._scores

    def readings(self) -> list[NluScore]:
        return self._readings


def _joint_pass(sources: Sources, sentences: Sequence[str]) -> _JointPass | None:
    """The :class:`_JointPass` of the LM of ``sources`` that is its NLU model's checkpoint."""
    nlu = sources.nlu
    if nlu is None or not hasattr(nlu, "score_with_lm") or not hasattr(nlu, "lm_identity"):
        return None
    want = nlu.lm_identity()
    for name, scorer in sources.lms.items():
        if scorer.identity() == want:
            return _JointPass(name, nlu, sentences)
    return None


def _through(
    cache: ScoreCache | None,
    ident: dict | None,
    sentences: Sequence[str],
    compute: Callable[[], list[float]],
) -> tuple[list[float], bool]:
    """``compute()`` (LM scores of ``sentences``) through ``cache`` under ``ident``."""
    if cache is None or ident is None:
        return compute(), False
    return cache.values(ident, sentences, compute)


def nlu_readings(
    nlu: NluSource,
    sentences: Sequence[str],
    cache: ScoreCache | None,
    compute: Callable[[], list[NluScore]] | None = None,
) -> list[NluScore]:
    """``nlu.score(sentences)`` (or ``compute()``, the same readings already computed) through
    ``cache`` where the source has an identity (an :class:`NluModel`): the systems that read
    the same n-best with the same checkpoint (e.g. ``nlu_features`` and its ablation
    ``lm_features``) run the NLU model once."""
    run = compute if compute is not None else (lambda: nlu.score(sentences))
    ident = getattr(nlu, "identity", None)
    if cache is None or ident is None:
        return run()
    out, hit = cache.values(ident(), sentences, run, nlu_to_json, nlu_from_json)
    if hit:
        logging.info("NLU model: %d sentences' readings from the score cache", len(sentences))
    return out


def extract_features(
    records: Sequence[NbestRecord],
    sources: Sources,
    names: Sequence[str] | None = None,
    source_name: str = "n-best",
    cache: ScoreCache | None = None,
) -> list[FeatureRecord]:
    """Features ``names`` (default: all the sources allow) of every hypothesis.

    Args:
        source_name: the n-best file, named in errors.
        cache: LM scores and NLU readings to reuse (:class:`rescoring.scorers.ScoreCache`).

    Raises:
        InputError: a feature the sources cannot give.
        CheckpointError: a value that is not finite, naming ``source_name``, the utterance,
            the hypothesis and the feature.
    """
    avail = sources.available()
    names = canonical_order(list(dict.fromkeys([AM, *(names if names is not None else avail)])))
    feats = [make_feature(n, "--features") for n in names]
    flags = {"lm": "--lm", "nlu": "--nlu-checkpoint", "lexicon": "--lexicon-dir"}
    for f in feats:
        if f.full_name not in avail:
            raise InputError(
                f"--features: feature {f.full_name!r} needs "
                f"{' and '.join(flags[n] for n in f.needs)}; available: {', '.join(avail)}"
            )
    needs = {n for f in feats for n in f.needs}
    ctx = build_context([h.words for r in records for h in r.hyps], sources, needs, cache)
    out = []
    for r in records:
        hyps = []
        for j, h in enumerate(r.hyps):
            values = {}
            for f in feats:
                v = float(f.value(h, ctx))
                if not math.isfinite(v):
                    raise CheckpointError(
                        f"{at(source_name, None, r.id)}: feature {f.full_name!r} of hyps[{j}] "
                        f"{h.words!r} is {v}; a model gave a score that is not finite (a broken "
                        "checkpoint: NaN or infinite weights?)"
                    )
                values[f.full_name] = v
            fh = FeatureHyp(h.words, values)
            if sources.nlu is not None:
                nlu = ctx.nlu[h.words]
                fh.intent, fh.slots = nlu.intent, list(nlu.tags)
            hyps.append(fh)
        out.append(FeatureRecord(r.id, r.ref, hyps))
    return out


def meta_path(path: str | Path) -> Path:
    return Path(f"{path}{META_SUFFIX}")


def write_features(path: str | Path, records: Sequence[FeatureRecord], meta: dict) -> None:
    """Write the features file atomically, then its metadata ``<path>.json`` (with the
    file's sha256, which ties the pair)."""
    for r in records:
        for j, h in enumerate(r.hyps):
            for k, v in h.features.items():
                if not math.isfinite(v):
                    raise InputError(f"{at(path, None, r.id)}: feature {k!r} of hyps[{j}] is {v}")
    write_jsonl(path, (r.to_json() for r in records))
    with atomic_write(meta_path(path)) as f:
        json.dump({**meta, "sha256": sha256(path)}, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def read_meta(path: str | Path) -> dict | None:
    """The metadata of a features file (None when there is none).

    Raises:
        InputError: a metadata file that is not JSON or belongs to another features file.
    """
    m = meta_path(path)
    if not m.is_file():
        return None
    try:
        meta = json.loads(m.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{m}: corrupt features metadata ({e}); re-run extract-features") from None
    if not isinstance(meta, dict) or meta.get("sha256") != sha256(path):
        raise InputError(
            f"{path}: {m} and the features file were written by different runs (sha256 "
            "differs); re-run extract-features"
        )
    return meta


@dataclass
class FeatureSet:
    """A features file read back: records, the feature names (canonical order), metadata."""

    path: Path
    records: list[FeatureRecord]
    names: list[str]
    meta: dict | None


def _hyp(obj: object, where: str, j: int, names: list[str] | None) -> FeatureHyp:
    name = f"hyps[{j}]"
    if not isinstance(obj, dict):
        raise InputError(f"{where}: field '{name}' must be an object, got {shown(obj)}")
    words = get_str(obj, "words", where, f"{name}.words")
    feats = obj.get("features")
    if not isinstance(feats, dict):
        raise InputError(f"{where}: field '{name}.features' must be an object, got {shown(feats)}")
    want = names if names is not None else list(feats)
    for k in feats:
        if k not in want:
            raise InputError(
                f"{where}: {name} has feature {k!r}, which the file's first hypothesis has not "
                f"(every hypothesis must have the same features: {want})"
            )
        make_feature(k, where)
    for k in want:
        if k not in feats:
            raise InputError(f"{where}: {name} lacks feature {k!r} (the file's features: {want})")
    values = {k: check_number(feats[k], where, f"{name}.features.{k}") for k in want}
    intent = get_str(obj, "intent", where, f"{name}.intent", required=False)
    slots = None
    if intent is not None:
        slots = get_list(obj, "slots", where, str, f"{name}.slots")
        if len(slots) != len(words.split()):
            raise InputError(
                f"{where}: {name} has {len(words.split())} words but {len(slots)} slot tags"
            )
    return FeatureHyp(words, values, intent, slots)


def read_features(path: str | Path) -> FeatureSet:
    """Read and validate a features file (module docstring).

    Raises:
        InputError: ``file:line (utt id)`` for a missing or mistyped field, a value that is not
            a finite number (NaN), a feature missing from a hypothesis or not in the registry,
            a duplicated id, an empty list; metadata of another run.
    """
    path = Path(path)
    verify_output(path)
    records: list[FeatureRecord] = []
    seen: dict[str, int] = {}
    names: list[str] | None = None
    for lineno, obj in read_jsonl(path):
        where = at(path, lineno, obj.get("id"))
        uid = get_str(obj, "id", where, nonempty=True)
        first_seen(seen, uid, path, lineno)
        ref = get_str(obj, "ref", where)
        hyps = obj.get("hyps")
        if not isinstance(hyps, list) or not hyps:
            raise InputError(
                f"{where}: field 'hyps' must be a non-empty list of hypotheses, got {shown(hyps)}"
            )
        parsed = []
        for j, h in enumerate(hyps):
            fh = _hyp(h, where, j, names)
            if names is None:
                names = list(fh.features)
            parsed.append(fh)
        records.append(FeatureRecord(uid, ref, parsed))
    if not records or names is None:
        raise InputError(f"{path}: no utterances")
    if AM not in names:
        raise InputError(f"{path}: no '{AM}' feature (the first-pass score is required)")
    return FeatureSet(path, records, canonical_order(names), read_meta(path))


@dataclass
class ExtractConfig:
    nbest: Path | None = field(
        default=None,
        metadata={"help": "n-best file: ours (.jsonl[.gz]), external TSV (.tsv/.txt) or .ark"},
    )
    nbest_dir: Path | None = field(
        default=None,
        metadata={"help": "decode folder; reads <dir>/nbest-<set-name>.jsonl.gz"},
    )
    set_name: str = field(default="dev", metadata={"help": "set name (with --nbest-dir)"})
    refs: Path | None = field(
        default=None, metadata={"help": "references (needed for TSV/.ark n-best)"}
    )
    lm: list[str] = field(
        default_factory=list,
        metadata={"help": "LMs as NAME=CHECKPOINT (feature lm:NAME), one or more"},
    )
    lm_scorer: str = field(
        default="nlm",
        metadata={"help": f"scorer of the --lm checkpoints, one of {sorted(SCORERS)} but none"},
    )
    nlu_checkpoint: Path | None = field(
        default=None, metadata={"help": "multitask train-lm checkpoint for the NLU features"}
    )
    lexicon_dir: Path | None = field(
        default=None,
        metadata={"help": "extract-slot-lexicon folder (slot-<type>.txt) for slot_in_lexicon"},
    )
    features: list[str] = field(
        default_factory=list, metadata={"help": "features to extract (default: all available)"}
    )
    out: Path | None = field(default=None, metadata={"help": "features file (.jsonl.gz)"})
    batch_size: int = field(default=64, metadata={"help": "LM batch size"})
    score_cache: Path | None = field(
        default=None,
        metadata={
            "help": "folder of LM scores and NLU readings to reuse: a sentence list read "
            "before by the same checkpoint, batch size and threads (rescore-systems: "
            "<out-dir>/score-cache)"
        },
    )
    max_hyps: int = field(
        default=DEFAULT_MAX_HYPS,
        metadata={"help": "most hypotheses per utterance; an utterance with more is an error"},
    )


def parse_lms(specs: Sequence[str]) -> dict[str, Path]:
    """``NAME=CHECKPOINT`` options -> {name: checkpoint}."""
    out: dict[str, Path] = {}
    for s in specs:
        name, sep, path = s.partition("=")
        if not sep or not NAME_RE.match(name) or not path:
            raise InputError(
                f"--lm {s!r}: expected NAME=CHECKPOINT (NAME of letters, digits and '._+-')"
            )
        if name in out:
            raise InputError(f"--lm: LM name {name!r} given twice")
        out[name] = Path(path)
    return out


def _real(p: Path | None) -> str | None:
    return None if p is None else str(Path(p).resolve())


def extract(cfg: ExtractConfig) -> dict:
    if cfg.out is None:
        raise InputError("--out is required (the features file to write)")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.nbest_dir is not None:
        cfg.nbest = cfg.nbest_dir / f"nbest-{cfg.set_name}.jsonl.gz"
    if cfg.nbest is None:
        raise InputError("--nbest (or --nbest-dir) is required")
    if cfg.lm_scorer not in SCORERS or cfg.lm_scorer == "none":
        raise InputError(
            f"--lm-scorer must be one of {sorted(set(SCORERS) - {'none'})}, got {cfg.lm_scorer!r}"
        )
    lms = parse_lms(cfg.lm)
    if cfg.lexicon_dir is not None and cfg.nlu_checkpoint is None:
        raise InputError("--lexicon-dir needs --nlu-checkpoint (slot_in_lexicon reads its slots)")
    for n in cfg.features:
        make_feature(n, "--features")
    verify_output(cfg.nbest)
    records = load_nbest(cfg.nbest, cfg.refs, cfg.max_hyps)
    lexicon = SlotLexicon(cfg.lexicon_dir) if cfg.lexicon_dir is not None else None
    sources = Sources(
        lms={n: build_scorer(cfg.lm_scorer, p, cfg.batch_size) for n, p in lms.items()},
        nlu=load_nlu_model(cfg.nlu_checkpoint, cfg.batch_size) if cfg.nlu_checkpoint else None,
        lexicon=lexicon,
    )
    t0 = time.time()
    feats = extract_features(
        records, sources, cfg.features or None, str(cfg.nbest), score_cache(cfg.score_cache)
    )
    seconds = time.time() - t0
    names = list(feats[0].hyps[0].features)
    missing = sorted(lexicon.missing) if lexicon is not None else []
    if missing:
        logging.warning(
            "%s: no lexicon for slot type(s) %s: their spans count as not in the lexicon",
            cfg.lexicon_dir,
            ", ".join(missing),
        )
    meta = {
        "features": names,
        "nbest": _real(cfg.nbest),
        "refs": _real(cfg.refs),
        "extraction": extraction_of(lms, cfg.lm_scorer, cfg.nlu_checkpoint, cfg.lexicon_dir),
        "utterances": len(feats),
        "hyps": sum(len(r.hyps) for r in feats),
        "unique_sentences": len({h.words for r in records for h in r.hyps}),
        "seconds": seconds,
        "lexicon_missing_types": missing,
    }
    write_features(cfg.out, feats, meta)
    logging.info(
        "Extracted %d features of %d hypotheses (%d utterances) in %.1f s -> %s",
        len(names),
        meta["hyps"],
        len(feats),
        seconds,
        cfg.out,
    )
    return meta


def extraction_of(
    lms: dict[str, Path], scorer: str, nlu: Path | None, lexicon_dir: Path | None
) -> dict:
    """What produced the feature values (compared by ``rescore-loglinear`` between the tuning
    and the rescored features)."""
    return {
        "lm": {n: {"scorer": scorer, "checkpoint": _real(p)} for n, p in sorted(lms.items())},
        "nlu_checkpoint": _real(nlu),
        "lexicon_dir": _real(lexicon_dir),
    }


def load_nlu_model(checkpoint: Path, batch_size: int) -> NluSource:
    """The NLU model of the NLU features (a function, so tests can substitute a stand-in)."""
    return NluModel(checkpoint, batch_size)


def main(argv: list[str] | None = None) -> None:
    run_cli(
        "extract-features", ExtractConfig, extract, __doc__, argv, errors=(InputError, ValueError)
    )


if __name__ == "__main__":
    main()
