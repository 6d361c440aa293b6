"""The toolkit's one log-sum-exp for scores held as Python floats.

Merging hypotheses that share a word sequence (beam search, n-best lists, lattice paths) adds
their probabilities in the log domain. Tensors use ``torch.logsumexp`` / ``logcumsumexp``;
plain floats use this, so every package merges the same way, to the last bit.

Usage:
    merged = logaddexp(a, b)                  # log(exp(a) + exp(b))
    total = logsumexp([s1, s2, s3])           # log(sum(exp(s)))
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def logsumexp(values: Iterable[float]) -> float:
    """``log(sum(exp(v)))`` computed as ``m + log(sum(exp(v - m)))`` with ``m = max(v)``.

    Written out rather than ``numpy.logaddexp`` (which uses ``log1p``) so the scores our n-best
    lists already hold are reproduced bit for bit; the terms are added left to right in a plain
    loop, the same on every Python version.

    Args:
        values: at least one natural-log score.

    Returns:
        The log of the summed probabilities; ``m`` itself when the largest value is infinite
        (``-inf`` for all ``-inf``: no probability mass, not NaN).

    Raises:
        ValueError: ``values`` is empty.
    """
    vals = list(values)
    if not vals:
        raise ValueError("logsumexp of no values")
    m = max(vals)
    if math.isinf(m):
        return m
    total = 0.0
    for v in vals:  # a plain loop: sum() of floats is compensated from Python 3.12 on
        total += math.exp(v - m)
    return m + math.log(total)


def logaddexp(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))``: :func:`logsumexp` of two scores."""
    return logsumexp((a, b))
