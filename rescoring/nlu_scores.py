"""How sure a multitask LM's NLU heads are: intent posterior and best-path slot log-probability.

:meth:`lm.scorer.LMScorer.predict_nlu` returns the argmax intent and the best *valid* BIO tag
sequence; the log-linear rescorer (:mod:`rescoring.features`) also needs the confidences behind
them. :func:`nlu_scores` runs the model exactly as ``predict_nlu`` does (the scorer's own
tokenisation and length-sorted batches, the same forward call with ``word_end``, the slot
head's float32 log-softmax and :func:`lm.bio.bio_viterbi`), so its ``intent`` and ``tags`` are
``predict_nlu``'s (tested), and adds per sentence:

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
    """:class:`NluScore` of each sentence from an :class:`lm.scorer.LMScorer` with NLU heads.

    Raises:
        RuntimeError: the model has no NLU heads.
    """
    import numpy as np
    import torch

    from lm.bio import bio_viterbi, transition_mask
    from lm.data import collate

    if not scorer.has_nlu_heads:
        raise RuntimeError("nlu_scores: this LM has no NLU heads; use a multitask checkpoint")
    tags = list(scorer.slot_tags)
    mask = transition_mask(tags)
    examples = scorer._examples(sentences)  # LMScorer's tokenisation, as predict_nlu
    result: list[NluScore | None] = [None] * len(examples)
    dev = scorer.device
    with torch.no_grad():
        for idx in scorer._batches(examples):  # LMScorer's batches, as predict_nlu
            b = collate([examples[i] for i in idx])
            out = scorer.model(
                b.inputs.to(dev), b.lengths.to(dev), b.word_pos.to(dev), word_end=b.word_end.to(dev)
            )
            intents = out["intent"].argmax(-1).tolist()  # (N,), as predict_nlu
            post = out["intent"].double().softmax(-1).cpu().numpy()  # (N, C)
            slot_lp = out["slot"].float().log_softmax(-1).cpu().numpy()  # (N, W, S)
            for j, i in enumerate(idx):
                nw = len(examples[i].word_starts)
                best = bio_viterbi(slot_lp[j, :nw], tags, mask)
                path_lp = slot_lp[j, np.arange(nw), best].astype(np.float64).sum()
                result[i] = NluScore(
                    intent=scorer.intents[intents[j]],
                    intent_conf=float(post[j, intents[j]]),
                    tags=tuple(tags[t] for t in best),
                    slot_logp=float(path_lp),
                )
    return result  # type: ignore[return-value]


class NluModel:
    """A multitask ``train-lm`` checkpoint read through :class:`rescoring.scorers.NeuralLM`
    (so checkpoint errors are the scorers' one-line ``CheckpointError``)."""

    def __init__(self, checkpoint: str | Path, batch_size: int = 64):
        from rescoring.scorers import NeuralLM

        self.checkpoint = Path(checkpoint)
        self.impl = NeuralLM(checkpoint, batch_size).impl
        if not self.impl.has_nlu_heads:
            raise InputError(f"{checkpoint}: --nlu-checkpoint has no NLU heads (an LM-only model)")

    def score(self, sentences: Sequence[str]) -> list[NluScore]:
        return nlu_scores(self.impl, sentences)
