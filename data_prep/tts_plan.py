"""Which TTS engines and voices render which split: the ``--tts-plan`` of ``prepare-snips``.

A plan names, per split, a list of items; an item is a voice ``engine:voice`` (``flite:slt``)
or an engine alone (``espeak-ng``), meaning all its voices not named anywhere else in the
plan, shared out disjointly between the splits that name the engine alone:

* when ``train`` is among them, every other such split gets ``max(1, round(n x 0.1))`` of the
  ``n`` voices of a seeded shuffle (in the order dev, test, test_unseen_engine) and train the
  rest - for ``train``, ``dev`` and ``test`` exactly :func:`data_prep.tts.split_voices`, so the
  plan ``train=espeak-ng;dev=espeak-ng;test=espeak-ng`` assigns the same voices as no plan;
* otherwise the shuffled voices are dealt out in turn.

No voice may render two splits. ``train``, ``dev`` and ``test`` must be named; the optional
``test_unseen_engine`` is an extra evaluation set: the test sentences rendered by engines that
neither train nor dev uses (``prepare-snips`` writes it as its own split).

Written as a spec (splits separated by ``;``, items by ``,``; spaces ignored)::

    train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng,flite:slt;test=espeak-ng,festival

or as a TOML file (a path ending in ``.toml``) with one key per split::

    train = ["espeak-ng", "flite:awb", "flite:rms"]
    dev = ["espeak-ng", "flite:slt"]
    test = ["espeak-ng", "festival"]
    test_unseen_engine = ["festival:kal_diphone"]

Each utterance draws its engine uniformly among its split's engines (skipped when there is
one), then a voice of that engine, a rate and a pitch, seeded by ``seed`` and the utterance id
(:func:`sample_plan_voice`), so a re-run draws the same. A weight after an item, ``*W`` (a
number > 0; on the engine or on any of its voices, the same on each if given twice), makes the
engine's draw proportional to it: ``train=espeak-ng*2,flite:awb,flite:rms,mbrola,pico`` gives
espeak-ng 2/5 of the train utterances and each other engine 1/5. Equal weights draw exactly
what no weights draw; a weight is not part of the item (``espeak-ng*2`` and ``espeak-ng`` are
the same item).

Usage:
    plan = load_tts_plan("train=espeak-ng,flite;dev=espeak-ng,flite;test=festival")
    voice_sets = resolve_tts_plan(plan, {e: get_tts_backend(e) for e in plan.engines}, seed=13)
    voice = sample_plan_voice(voice_sets["train"], "snips-train-7", seed=13)
    voice2 = sample_render_voice(voice_sets["train"], "snips-train-7", 2, seed=13)  # _r2
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.io import InputError
from common.speed import render_id
from data_prep.tts import TTS_BACKENDS, TTSBackend, TTSError, Voice

REQUIRED_SPLITS = ("train", "dev", "test")
UNSEEN_SPLIT = "test_unseen_engine"
PLAN_SPLITS = (*REQUIRED_SPLITS, UNSEEN_SPLIT)
EVAL_FRACTION = 0.1  # of an engine's voices for each evaluation split that shares it with train


@dataclass(frozen=True)
class PlanItem:
    """An engine alone (``voice is None``: its voices shared out) or one of its voices, with
    the engine's draw weight in its split if the item gives one (``engine*2``; not part of
    the item's identity)."""

    engine: str
    voice: str | None = None
    weight: float | None = field(default=None, compare=False)

    def __str__(self) -> str:
        name = self.engine if self.voice is None else f"{self.engine}:{self.voice}"
        return name if self.weight is None else f"{name}*{self.weight:g}"


class VoiceSet(dict):
    """A split's voices, ``engine -> sorted voice names``, and ``weights``, ``engine -> draw
    weight`` (1 unless the plan gives one): what :func:`sample_plan_voice` draws from."""

    def __init__(self, voices=(), weights: Mapping[str, float] | None = None) -> None:
        super().__init__(voices)
        self.weights: dict[str, float] = dict(weights or {})


@dataclass(frozen=True)
class TTSPlan:
    """Items per split, in :data:`PLAN_SPLITS` order; ``source`` names where it came from."""

    splits: dict[str, tuple[PlanItem, ...]]
    source: str = "--tts-plan"

    @property
    def engines(self) -> list[str]:
        return sorted({i.engine for items in self.splits.values() for i in items})

    def weights(self, split: str) -> dict[str, float]:
        """``engine -> draw weight`` of every engine of ``split`` (1 where none is given)."""
        out = {i.engine: 1.0 for i in self.splits[split]}
        out.update({i.engine: i.weight for i in self.splits[split] if i.weight is not None})
        return out

    def to_spec(self) -> str:
        return ";".join(f"{s}={','.join(map(str, items))}" for s, items in self.splits.items())


class PlanError(TTSError, InputError):
    """A malformed or impossible TTS plan (the message names the plan and the split); bad
    input, reported by the entry points as one line without a type name."""


def _parse_weight(text: str, where: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise PlanError(f"{where}: weight {text.strip()!r} is not a number > 0")
    return weight


def _parse_item(text: str, where: str) -> PlanItem:
    body, star, weight = text.partition("*")
    engine, sep, voice = (t.strip() for t in body.partition(":"))
    if not engine:
        raise PlanError(f"{where}: item {text.strip()!r} names no engine (engine or engine:voice)")
    if engine not in TTS_BACKENDS:
        raise PlanError(f"{where}: unknown TTS engine {engine!r}; known: {sorted(TTS_BACKENDS)}")
    if sep and not voice:
        raise PlanError(f"{where}: item {text.strip()!r} has ':' but no voice")
    item_where = f"{where}: item {text.strip()!r}"
    return PlanItem(engine, voice or None, _parse_weight(weight, item_where) if star else None)


def _build(raw: dict[str, list[str]], source: str) -> TTSPlan:
    """Check the items of every split and the rules across splits (see module docstring)."""
    unknown = [s for s in raw if s not in PLAN_SPLITS]
    if unknown:
        raise PlanError(f"{source}: unknown split {unknown[0]!r}; splits: {list(PLAN_SPLITS)}")
    missing = [s for s in REQUIRED_SPLITS if s not in raw]
    if missing:
        raise PlanError(f"{source}: no voices for split {missing[0]!r} (train, dev, test needed)")
    splits: dict[str, tuple[PlanItem, ...]] = {}
    owner: dict[PlanItem, str] = {}  # named voice -> its split
    for split in PLAN_SPLITS:
        if split not in raw:
            continue
        where = f"{source}: split {split}"
        if not raw[split]:
            raise PlanError(f"{where}: no voices")
        items = tuple(_parse_item(t, where) for t in raw[split])
        for engine in {i.engine for i in items}:
            given = sorted({i.weight for i in items if i.engine == engine and i.weight})
            if len(given) > 1:
                raise PlanError(
                    f"{where}: engine {engine} has weights {', '.join(f'{w:g}' for w in given)}; "
                    "give it one (on any of its items)"
                )
        for item in items:
            if items.count(item) > 1:
                raise PlanError(f"{where}: {item} named twice")
            if item.voice is not None:
                if item in owner:
                    raise PlanError(
                        f"{where}: voice {item} also renders {owner[item]}; voices of different "
                        "splits must differ"
                    )
                if PlanItem(item.engine) in items:
                    raise PlanError(
                        f"{where}: {item} is named beside {item.engine} (all of its voices): "
                        "name the engine or some of its voices"
                    )
                owner[item] = split
        splits[split] = items
    if UNSEEN_SPLIT in splits:
        seen = {i.engine for s in ("train", "dev") for i in splits[s]}
        shared = sorted({i.engine for i in splits[UNSEEN_SPLIT]} & seen)
        if shared:
            raise PlanError(
                f"{source}: split {UNSEEN_SPLIT}: engine {shared[0]} also renders train or dev; "
                "the unseen-engine set must use engines neither of them uses"
            )
    return TTSPlan(splits, source)


def parse_tts_plan(spec: str) -> TTSPlan:
    """Parse ``split=item[,item...][;split=...]`` (see the module docstring).

    Raises:
        PlanError: a malformed spec, an unknown split or engine, a voice named twice or in two
            splits, an unseen-engine set with an engine of train or dev.
    """
    source = f"--tts-plan {spec!r}"
    raw: dict[str, list[str]] = {}
    parts = [p for p in spec.split(";") if p.strip()]
    if not parts:
        raise PlanError(f"{source}: empty plan (expected split=engine[:voice],...;...)")
    for part in parts:
        split, sep, items = part.partition("=")
        split = split.strip()
        if not sep or not split:
            raise PlanError(f"{source}: {part.strip()!r} is not split=engine[:voice],...")
        if split in raw:
            raise PlanError(f"{source}: split {split!r} given twice")
        raw[split] = [t for t in items.split(",") if t.strip()]
    return _build(raw, source)


def read_tts_plan_file(path: Path) -> TTSPlan:
    """A plan from a TOML file: one key per split, a list of items (or one item) each."""
    try:
        obj = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: TTS plan file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{path}: not valid TOML ({e})") from None
    raw: dict[str, list[str]] = {}
    for split, items in obj.items():
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise PlanError(f"{path}: split {split}: expected a list of 'engine[:voice]' strings")
        raw[split] = items
    return _build(raw, str(path))


def load_tts_plan(value: str) -> TTSPlan:
    """``value`` is a path ending in ``.toml`` (a plan file) or a spec."""
    if value.strip().endswith(".toml"):
        return read_tts_plan_file(Path(value.strip()))
    return parse_tts_plan(value)


def _share_out(voices: list[str], splits: list[str], seed: int) -> dict[str, list[str]]:
    """Disjoint voice sets for the splits naming one engine alone (module docstring rules)."""
    shuffled = sorted(voices)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    if "train" in splits:
        out, start = {}, 0
        for split in (s for s in splits if s != "train"):
            k = max(1, round(n * EVAL_FRACTION))
            out[split] = shuffled[start : start + k]
            start += k
        out["train"] = shuffled[start:]
    else:
        out = {s: shuffled[i :: len(splits)] for i, s in enumerate(splits)}
    return {s: sorted(v) for s, v in out.items()}


def resolve_tts_plan(
    plan: TTSPlan, backends: Mapping[str, TTSBackend], seed: int
) -> dict[str, VoiceSet]:
    """The voices of each split: ``split -> engine -> sorted voice names`` (disjoint), each
    split's a :class:`VoiceSet` carrying the plan's engine weights.

    Raises:
        TTSError: a voice the engine does not have (naming both), an engine that is not
            installed, or too few voices to give every split naming an engine alone one.
    """
    out: dict[str, VoiceSet] = {s: VoiceSet(weights=plan.weights(s)) for s in plan.splits}
    for engine in plan.engines:
        backend = backends[engine]
        named = sorted(
            {i.voice for items in plan.splits.values() for i in items if i.engine == engine}
            - {None}
        )
        backend.check_voices(named)
        for split, items in plan.splits.items():
            mine = sorted(i.voice for i in items if i.engine == engine and i.voice is not None)
            if mine:
                out[split][engine] = mine
        sharing = [s for s, items in plan.splits.items() if PlanItem(engine) in items]
        if not sharing:
            continue
        pool = sorted(set(backend.voices()) - set(named))
        shares = _share_out(pool, sharing, seed)
        empty = [s for s in sharing if not shares[s]]
        if empty:
            raise PlanError(
                f"{plan.source}: {engine} has {len(pool)} voice(s) not named elsewhere, too few "
                f"to give each of {sharing} its own (none left for {empty[0]})"
            )
        for split in sharing:
            out[split][engine] = shares[split]
    return out


def sample_plan_voice(
    voice_set: Mapping[str, list[str]],
    utt_id: str,
    seed: int,
    rate_range: tuple[int, int] = (140, 200),
    pitch_range: tuple[int, int] = (30, 70),
) -> Voice:
    """Engine (when there are several: uniformly, or by the ``weights`` of a :class:`VoiceSet`
    when they differ), voice, rate and pitch of ``utt_id``, drawn from its split's
    ``voice_set`` (``engine -> voices``) deterministically from ``seed`` and the id; with one
    engine the draws are those of :func:`data_prep.tts.sample_voice`, and with equal weights
    those of a plan without weights."""
    rng = random.Random(f"{seed}:{utt_id}")
    engines = sorted(voice_set)
    weights = [getattr(voice_set, "weights", {}).get(e, 1.0) for e in engines]
    if len(engines) == 1:
        engine = engines[0]
    elif len(set(weights)) == 1:
        engine = rng.choice(engines)
    else:
        engine = rng.choices(engines, weights=weights)[0]
    name = rng.choice(voice_set[engine])
    return Voice(name, rng.randint(*rate_range), rng.randint(*pitch_range), engine)


def sample_render_voice(
    voice_set: Mapping[str, list[str]],
    utt_id: str,
    k: int,
    seed: int,
    rate_range: tuple[int, int] = (140, 200),
    pitch_range: tuple[int, int] = (30, 70),
) -> Voice:
    """The voice of rendering ``k`` (>= 2) of ``utt_id`` (``prepare-snips --train-renders``):
    the engine ``k - 1`` places after that of the first rendering (:func:`sample_plan_voice`)
    in the sorted engines of ``voice_set``, so that with as many renderings as engines each
    engine speaks the sentence once; then a voice of that engine, a rate and a pitch, drawn
    from ``seed`` and the rendering's id (``<utt_id>_r<k>``)."""
    rng = random.Random(f"{seed}:{render_id(utt_id, k)}")  # raises for k < 2
    engines = sorted(voice_set)
    first = sample_plan_voice(voice_set, utt_id, seed, rate_range, pitch_range).engine
    engine = engines[(engines.index(first) + k - 1) % len(engines)]
    name = rng.choice(voice_set[engine])
    return Voice(name, rng.randint(*rate_range), rng.randint(*pitch_range), engine)
