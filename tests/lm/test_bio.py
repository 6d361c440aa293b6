"""BIO-constrained slot decoding: valid sequences only, argmax when the argmax is valid."""

import itertools

import numpy as np
import pytest

from lm.bio import bio_viterbi, transition_mask

TAGS = ["O", "B-city", "I-city", "B-artist", "I-artist"]


def _valid(seq: list[str]) -> bool:
    prev = "O"
    for t in seq:
        if t.startswith("I-") and prev not in (f"B-{t[2:]}", f"I-{t[2:]}"):
            return False
        prev = t
    return True


def _brute_force(scores: np.ndarray) -> list[int]:
    best, best_score = None, -np.inf
    for seq in itertools.product(range(len(TAGS)), repeat=len(scores)):
        if _valid([TAGS[i] for i in seq]):
            s = sum(scores[w, i] for w, i in enumerate(seq))
            if s > best_score:
                best, best_score = list(seq), s
    return best


def test_invalid_argmax_is_repaired_to_the_best_valid_sequence():
    lp = np.log(
        np.array(
            [
                [0.6, 0.1, 0.1, 0.1, 0.1],  # O
                [0.1, 0.2, 0.5, 0.1, 0.1],  # argmax I-city after O: invalid
                [0.1, 0.1, 0.1, 0.1, 0.6],  # argmax I-artist after city: invalid
            ]
        )
    )
    assert [TAGS[i] for i in lp.argmax(1)] == ["O", "I-city", "I-artist"]
    best = [TAGS[i] for i in bio_viterbi(lp, TAGS)]
    assert _valid(best) and best == [TAGS[i] for i in _brute_force(lp)]


def test_matches_brute_force_and_keeps_a_valid_argmax():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4):
        for _ in range(20):
            lp = np.log(rng.dirichlet(np.ones(len(TAGS)), size=n))
            got = bio_viterbi(lp, TAGS, transition_mask(TAGS))
            assert got == _brute_force(lp)
            arg = [TAGS[i] for i in lp.argmax(1)]
            if _valid(arg):
                assert got == list(lp.argmax(1))
    assert bio_viterbi(np.zeros((0, len(TAGS))), TAGS) == []
    with pytest.raises(ValueError, match="5 tags"):
        bio_viterbi(np.zeros((2, 3)), TAGS)
