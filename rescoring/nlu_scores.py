"""How sure a multitask LM's NLU heads are: intent posterior and best-path slot log-probability.

:meth:`lm.scorer.LMScorer.predict_nlu` returns the argmax intent and the best *valid* BIO tag
sequence; the log-linear rescorer (:mod:`rescoring.features`) also needs the confidences behind
them. :func:`nlu_scores` is :meth:`~lm.scorer.LMScorer.predict_nlu_scored` (one forward pass per
batch gives ``predict_nlu``'s ``intent`` and ``tags`` and the confidences behind them) in the
rescorer's record type, per sentence:

* ``intent_conf``: the softmax posterior of the predicted (argmax) intent, in (0, 1];
* ``slot_logp``: ``sum_w log p(tag_w | sentence)`` along the best valid BIO path (the slot head
  predicts each word's tag independently, so this is that path's log-probability; not
  renormalised over valid paths); ``<= 0``, and 0 for the empty sentence.

Batched results equal one-at-a-time results (to float rounding; the encoder is causal and the
slot BiLSTM is packed, so padding never reaches a real position).

Usage:
    model = NluModel("exp/lm/pretrained_multitask_rwm/best.pt")
    model.score(["play hey jude"])   # [NluScore("PlayMusic", 0.93, ("O", "B-track", "I-track"), -0.4)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.io import InputError


@dataclass(frozen=True)
class NluScore:
    """The NLU reading of one sentence and its confidences (module docstring)."""

    intent: str
    intent_conf: float  # posterior of ``intent``
    tags: tuple[str, ...]  # one BIO tag per word, a valid sequence
    slot_logp: float  # log-probability of ``tags`` under the slot head (sum over words)


def nlu_scores(scorer: Any, sentences: Sequence[str]) -> list[NluScore]:
    """:class:`NluScore` of each sentence from an :class:`lm.scorer.LMScorer` with NLU heads:
    its :meth:`~lm.scorer.LMScorer.predict_nlu_scored`, the one implementation of the NLU
    reading and its confidences (the pseudo-labeller uses it too).

    Raises:
        RuntimeError: the model has no NLU heads.
    """
    if not scorer.has_nlu_heads:
        raise RuntimeError("nlu_scores: this LM has no NLU heads; use a multitask checkpoint")
    return [_reading(p) for p in scorer.predict_nlu_scored(sentences)]


def _reading(p: Any) -> NluScore:
    """An :class:`lm.scorer.NluPrediction` as an :class:`NluScore`."""
    return NluScore(
        intent=p.intent, intent_conf=p.intent_prob, tags=tuple(p.tags), slot_logp=p.slot_logprob
    )


class NluModel:
    """A multitask ``train-lm`` checkpoint read through :class:`rescoring.scorers.NeuralLM`
    (so checkpoint errors are the scorers' one-line ``CheckpointError``)."""

    def __init__(self, checkpoint: str | Path, batch_size: int = 64):
        from rescoring.scorers import NeuralLM

        self.checkpoint = Path(checkpoint)
        self._lm = NeuralLM(checkpoint, batch_size)
        self.impl = self._lm.impl
        if not self.impl.has_nlu_heads:
            raise InputError(f"{checkpoint}: --nlu-checkpoint has no NLU heads (an LM-only model)")

    def score(self, sentences: Sequence[str]) -> list[NluScore]:
        return nlu_scores(self.impl, sentences)

    def score_with_lm(self, sentences: Sequence[str]) -> tuple[list[float], list[NluScore]]:
        """``(LM scores, readings)`` of ``sentences`` from one encoder pass
        (:meth:`lm.scorer.LMScorer.score_and_predict_nlu`): the floats of
        :meth:`lm_identity`'s scorer and of :meth:`score`."""
        scores, preds = self.impl.score_and_predict_nlu(sentences)
        return scores, [_reading(p) for p in preds]

    def identity(self) -> dict:
        """What the readings depend on besides the sentences (a ``ScoreCache`` key): the LM
        scorer's identity of the same checkpoint, with "scorer" ``nlu`` to keep them apart."""
        return {**self._lm.identity(), "scorer": "nlu"}

    def lm_identity(self) -> dict:
        """The identity of the LM scores of this checkpoint (``NeuralLM.identity``): an LM of
        the rescorer with this identity is scored in the NLU model's pass."""
        return self._lm.identity()


def nlu_to_json(s: NluScore) -> list:
    """An :class:`NluScore` as JSON (a ``ScoreCache`` entry); floats round-trip exactly."""
    return [s.intent, s.intent_conf, list(s.tags), s.slot_logp]


def nlu_from_json(v: Any) -> NluScore:
    """:func:`nlu_to_json`'s inverse.

    Raises:
        ValueError: ``v`` is not what :func:`nlu_to_json` writes.
    """
    ok = isinstance(v, list) and len(v) == 4
    intent, conf, tags, logp = v if ok else (None, None, None, None)
    ok = ok and isinstance(intent, str) and isinstance(conf, float) and isinstance(logp, float)
    ok = ok and isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    if not ok:
        raise ValueError("an NLU reading is not [intent, intent_conf, tags, slot_logp]")
    return NluScore(intent=intent, intent_conf=conf, tags=tuple(tags), slot_logp=logp)
