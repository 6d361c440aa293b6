"""BIO-constrained slot decoding.

A per-word argmax over slot tags can produce sequences no slot annotation has, such as
``O I-city`` or ``B-artist I-album``. :func:`bio_viterbi` returns the best tag sequence among the
valid ones: ``I-X`` only right after ``B-X`` or ``I-X``, never first. With the per-word scores
of a softmax head this is the usual constrained decoding of a BIO tagger (as CRF taggers do).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def transition_mask(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed[prev, cur], allowed_first[cur]) as boolean arrays over ``tags``."""
    n = len(tags)
    allowed = np.ones((n, n), dtype=bool)
    first = np.ones(n, dtype=bool)
    for j, cur in enumerate(tags):
        if cur.startswith("I-"):
            name = cur[2:]
            first[j] = False
            for i, prev in enumerate(tags):
                allowed[i, j] = prev in (f"B-{name}", f"I-{name}")
    return allowed, first


def bio_viterbi(
    scores: np.ndarray, tags: Sequence[str], mask: tuple[np.ndarray, np.ndarray] | None = None
) -> list[int]:
    """Indices of the highest-scoring valid BIO sequence.

    Args:
        scores: ``(num_words, num_tags)`` log-probabilities (or any additive scores).
        tags: the tag names, ``O`` / ``B-x`` / ``I-x``.
        mask: :func:`transition_mask` of ``tags``, to reuse across sentences.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(tags):
        raise ValueError(f"bio_viterbi: scores of shape {scores.shape} for {len(tags)} tags")
    if scores.shape[0] == 0:
        return []
    allowed, first = mask if mask is not None else transition_mask(tags)
    trans = np.where(allowed, 0.0, -np.inf)
    delta = np.where(first, scores[0], -np.inf)
    back = np.zeros(scores.shape, dtype=np.int64)
    for w in range(1, scores.shape[0]):
        cand = delta[:, None] + trans  # (prev, cur)
        back[w] = cand.argmax(0)
        delta = cand.max(0) + scores[w]
    best = [int(delta.argmax())]
    for w in range(scores.shape[0] - 1, 0, -1):
        best.append(int(back[w, best[-1]]))
    return best[::-1]
