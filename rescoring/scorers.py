"""Hypothesis scorers behind a registry, and batched, cached scoring of n-best lists.

A scorer maps sentences (space-separated words) to natural-log probabilities. Each distinct
sentence of a set of n-best lists is scored once (:func:`score_nbest`), so a λ/β sweep never
runs the LM again.

Usage:
    scorer = build_scorer("nlm", checkpoint="exp/lm/<lm>/best.pt")
    stats = score_nbest(records, scorer)   # fills hyp.lm_score; returns timing

A :class:`ScoreCache` folder (``--score-cache`` of ``tune-rescoring``, ``rescore-nbest``,
``extract-features``; ``rescore-systems`` uses ``<out-dir>/score-cache``) keeps the scores of
each scored sentence list under a key of the scorer's identity (its checkpoint's SHA-256, batch
size and torch threads) and the list itself: a hit returns what the same computation gave, bit
for bit, so the systems that score the same n-best with the same LM (e.g. ``lm`` and the LM
feature of ``nlu_features``) run it once. ``extract-features`` keeps the NLU model's readings
there too (:meth:`ScoreCache.values`, keyed by ``NluModel.identity``), so ``nlu_features`` and
its ablation ``lm_features`` read an n-best with the NLU model once.
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.io import CheckpointError, InputError, atomic_write
from rescoring.nbest import NbestRecord
from rescoring.outputs import sha256


class Scorer(abc.ABC):
    """Interface of a hypothesis scorer."""

    name = ""
    has_nlu_heads = False
    uses_lm = True  # False: lm_score is 0, so λ has no effect and is not swept
    checkpoint: Path | None = None

    @classmethod
    def build(cls, checkpoint: str | Path | None, batch_size: int) -> Scorer:
        """Construct from the command-line options (a checkpoint is required by default)."""
        if checkpoint is None:
            raise InputError(f"scorer {cls.name!r} needs --lm-checkpoint")
        return cls(checkpoint, batch_size=batch_size)

    @abc.abstractmethod
    def score(self, sentences: Sequence[str]) -> list[float]:
        """Natural-log probability of each sentence (with end-of-sentence)."""

    def predict_nlu(self, sentences: Sequence[str]) -> list[tuple[str, list[str]]]:
        raise NotImplementedError(f"scorer {self.name!r} has no NLU heads")

    def identity(self) -> dict | None:
        """What the scores depend on besides the sentences (a :class:`ScoreCache` key), or
        ``None``: not cached."""
        return None


class NoLM(Scorer):
    """No second pass: every hypothesis scores 0 (the RNN-T 1-best system)."""

    name = "none"
    uses_lm = False

    @classmethod
    def build(cls, checkpoint: str | Path | None, batch_size: int) -> Scorer:
        del checkpoint, batch_size
        return cls()

    def score(self, sentences: Sequence[str]) -> list[float]:
        return [0.0] * len(sentences)


class NeuralLM(Scorer):
    """A ``train-lm`` checkpoint (LM-only or multitask) through :class:`lm.scorer.LMScorer`."""

    name = "nlm"

    def __init__(self, checkpoint: str | Path, batch_size: int = 64):
        from lm.scorer import LMScorer

        self.checkpoint = Path(checkpoint)
        try:
            self.impl = LMScorer.from_checkpoint(checkpoint, batch_size=batch_size)
        except CheckpointError as e:
            lines = str(e).splitlines()
            if len(lines) <= 1:
                raise
            # torch's unpickling errors span many lines; the CLI's error must stay one line
            raise CheckpointError(f"{lines[0].rstrip()} ...)") from e
        except MemoryError:
            raise
        except Exception as e:
            # LMScorer raises CheckpointError for a missing, truncated or non-LM file; a file
            # that passes those checks can still hold a tokenizer or weights of the wrong type.
            raise CheckpointError(
                f"{checkpoint}: not a usable train-lm checkpoint ({type(e).__name__}: {e})"
            ) from e
        self.has_nlu_heads = bool(self.impl.has_nlu_heads)
        self._sha256: str | None = None  # the checkpoint's, hashed once (identity())

    def score(self, sentences: Sequence[str]) -> list[float]:
        return self.impl.score(sentences)

    def identity(self) -> dict | None:
        """The scores' :class:`ScoreCache` key; the checkpoint file is hashed on the first call
        only (its weights were loaded once, too; feature extraction asks several times)."""
        import torch

        if self._sha256 is None:
            self._sha256 = sha256(self.checkpoint)
        return {
            "scorer": self.name,
            "checkpoint_sha256": self._sha256,
            "batch_size": self.impl.batch_size,
            "threads": torch.get_num_threads(),
        }

    def predict_nlu(self, sentences: Sequence[str]) -> list[tuple[str, list[str]]]:
        return self.impl.predict_nlu(sentences)


class BigramLM(Scorer):
    """Add-k smoothed word bigram LM estimated from a text file (one sentence per line).

    A light baseline (and the scorer the tests use without training a neural LM); the
    "checkpoint" is the training text, e.g. ``data/lm/pretrain.txt``.
    """

    name = "bigram"

    def __init__(self, checkpoint: str | Path, batch_size: int = 0, k: float = 0.1):
        del batch_size
        from collections import Counter

        from common.io import open_text

        if not Path(checkpoint).is_file():
            raise InputError(f"{checkpoint}: bigram training text not found")
        self.checkpoint = Path(checkpoint)
        self.uni: Counter = Counter()
        self.bi: Counter = Counter()
        with open_text(checkpoint) as f:
            for line in f:
                w = ["<s>", *line.split(), "</s>"]
                self.uni.update(w[:-1])
                self.bi.update(zip(w[:-1], w[1:], strict=True))
        self.k = k
        self.vocab = len(self.uni) + 2  # + </s> + <unk>

    def identity(self) -> dict | None:
        return {"scorer": self.name, "text_sha256": sha256(self.checkpoint), "k": self.k}

    def score(self, sentences: Sequence[str]) -> list[float]:
        import math

        out = []
        for s in sentences:
            w = ["<s>", *s.split(), "</s>"]
            out.append(
                sum(
                    math.log((self.bi[(a, b)] + self.k) / (self.uni[a] + self.k * self.vocab))
                    for a, b in zip(w[:-1], w[1:], strict=True)
                )
            )
        return out


SCORERS: dict[str, type[Scorer]] = {s.name: s for s in (NoLM, NeuralLM, BigramLM)}


def build_scorer(name: str, checkpoint: str | Path | None = None, batch_size: int = 64) -> Scorer:
    if name not in SCORERS:
        raise InputError(f"unknown scorer {name!r}; known: {sorted(SCORERS)}")
    return SCORERS[name].build(checkpoint, batch_size)


def _float(v: Any) -> float:
    if not isinstance(v, float):
        raise ValueError("a score is not a number")
    return v


class ScoreCache:
    """Scores of sentence lists on disk, one ``<key>.json.gz`` per (scorer identity, list).

    The key hashes the identity and the whole list, so a hit is the same computation (the same
    batches of the same model on the same threads) and gives the same floats. Files are written
    atomically; two processes writing one key write the same content. A file that cannot be
    read, or does not match its key, is logged and computed again.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def scores(self, scorer: Scorer, sentences: Sequence[str]) -> tuple[list[float], bool]:
        """``(scores, hit)`` of ``sentences`` by ``scorer``."""
        ident = scorer.identity()
        if ident is None:
            return scorer.score(sentences), False
        return self.values(ident, sentences, lambda: [float(v) for v in scorer.score(sentences)])

    def values(
        self,
        ident: dict,
        sentences: Sequence[str],
        compute: Callable[[], list],
        encode: Callable[[Any], Any] = lambda v: v,
        decode: Callable[[Any], Any] = _float,
    ) -> tuple[list, bool]:
        """``(values, hit)``: one value per sentence of the computation ``ident`` names, from
        the cache or from ``compute()`` (then stored). ``encode`` makes a value JSON, ``decode``
        reads it back and raises ``ValueError``/``TypeError``/``KeyError`` for one it cannot
        use (default: a float, the LM scores)."""
        text = json.dumps(ident, sort_keys=True) + "\n" + "\n".join(sentences)
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        path = self.folder / f"{key}.json.gz"
        if path.is_file():
            try:
                with gzip.open(path, "rt", encoding="utf-8") as f:
                    obj = json.load(f)
                stored = obj["scores"]
                if obj["identity"] != ident or len(stored) != len(sentences):
                    raise ValueError("identity or length differs from its key")
                return [decode(v) for v in stored], True
            except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
                logging.warning("%s: unusable score-cache entry (%s); scoring again", path, e)
        values = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            json.dump(
                {
                    "identity": ident,
                    "sentences": len(sentences),
                    "scores": [encode(v) for v in values],
                },
                f,
            )
        return values, False


def score_cache(folder: str | Path | None) -> ScoreCache | None:
    """The :class:`ScoreCache` of a ``--score-cache`` option (``None``: no cache)."""
    return None if folder is None else ScoreCache(folder)


def cached_scores(
    scorer: Scorer, sentences: Sequence[str], cache: ScoreCache | None
) -> tuple[list[float], bool]:
    """``scorer.score(sentences)`` through ``cache`` if given: ``(scores, hit)``."""
    if cache is None:
        return scorer.score(sentences), False
    return cache.scores(scorer, sentences)


def score_nbest(
    records: list[NbestRecord], scorer: Scorer, cache: ScoreCache | None = None
) -> dict[str, float]:
    """Set ``lm_score`` of every hypothesis, scoring each distinct sentence once (through
    ``cache`` if given).

    Returns:
        ``{"hyps", "unique", "seconds", "hyps_per_second", "cached"}``.

    Raises:
        CheckpointError: the scorer gave a score that is not a finite number (NaN weights), which
            would otherwise decide the argmax silently.
    """
    unique = sorted({h.words for r in records for h in r.hyps})
    t0 = time.time()
    values, hit = cached_scores(scorer, unique, cache)
    scores = dict(zip(unique, values, strict=True))
    dt = time.time() - t0
    for sentence, v in scores.items():
        if not math.isfinite(v):
            raise CheckpointError(
                f"{scorer.checkpoint or scorer.name}: the LM scored {sentence!r} as {v}; "
                "the checkpoint is broken (NaN or infinite weights?)"
            )
    n = 0
    for r in records:
        for h in r.hyps:
            h.lm_score = scores[h.words]
            n += 1
    stats = {
        "hyps": n,
        "unique": len(unique),
        "seconds": dt,
        "hyps_per_second": len(unique) / dt if dt > 0 else float("inf"),
        "cached": hit,
    }
    logging.info(
        "Scored %d hypotheses (%d distinct) with %s in %.1f s (%.0f sentences/s)%s",
        n,
        len(unique),
        scorer.name,
        dt,
        stats["hyps_per_second"],
        " (from the score cache)" if hit else "",
    )
    return stats
