"""The one log-sum-exp: the formula every merge used before, to the last bit."""

import math
import random

import pytest

from common.numeric import logaddexp, logsumexp


def _two(a: float, b: float) -> float:  # asr/search.py's and asr/decode.py's merge
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _many(vals: list[float]) -> float:  # the lattice reader's merge
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


def test_bit_identical_to_the_merges_it_replaced():
    rng = random.Random(0)
    for _ in range(20_000):
        a, b = rng.uniform(-80, 0), rng.uniform(-80, 0)
        assert logaddexp(a, b) == _two(a, b)
        vals = [rng.uniform(-40, 5) for _ in range(rng.randint(1, 12))]
        assert logsumexp(vals) == _many(vals)


def test_edges():
    assert logaddexp(-math.inf, -math.inf) == -math.inf
    assert logaddexp(-math.inf, -2.0) == -2.0
    assert logsumexp([math.inf, 0.0]) == math.inf
    assert logaddexp(0.0, 0.0) == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        logsumexp([])
