"""Hand-computed WER / rare-word WER / SLU cases, bootstrap determinism and paired tests."""

import itertools
import warnings
from collections import Counter

import pytest

from rescoring.metrics import (
    UttCounts,
    add_slu,
    bootstrap_ci,
    corpus_metrics,
    paired_bootstrap,
    paired_bootstrap_diff,
    slot_spans,
    utt_counts,
)

# K = 5: "hey" (1) is rare, "jude" and "zork" are OOV hence rare, the others are common.
COUNTS = {"play": 10, "the": 10, "song": 10, "a": 10, "hey": 1}
REF = "play the song hey jude".split()


def test_exact_match():
    u = utt_counts(REF, REF, COUNTS, 5)
    assert (u.errors, u.rare_ref, u.common_ref, u.rare_errors) == (0, 2, 3, 0)


def test_substitution_deletion_and_rare_insertion():
    # play (the->*) song hey (jude->judy) (*->zork): 1 del common, 1 sub rare, 1 ins rare
    u = utt_counts(REF, "play song hey judy zork".split(), COUNTS, 5)
    assert (u.errors, u.dels, u.subs, u.ins) == (3, 1, 1, 1)
    assert (u.rare_errors, u.common_errors) == (2, 1)
    m = corpus_metrics([u])
    assert m["wer"] == pytest.approx(60.0)
    assert m["rare_wer"] == pytest.approx(100.0)
    assert m["common_wer"] == pytest.approx(100 / 3)
    assert m["rare_share"] == pytest.approx(40.0)


def test_common_insertion_is_charged_to_common_words():
    u = utt_counts(REF, "play the the song hey jude".split(), COUNTS, 5)
    assert (u.ins, u.rare_errors, u.common_errors) == (1, 0, 1)


def test_empty_hypothesis():
    u = utt_counts(REF, [], COUNTS, 5)
    assert (u.dels, u.rare_errors, u.common_errors) == (5, 2, 3)
    assert corpus_metrics([u])["rare_wer"] == pytest.approx(100.0)


def test_corpus_pools_counts_not_rates():
    a = utt_counts(REF, REF, COUNTS, 5)  # 0 / 5
    b = utt_counts(["hey"], [], COUNTS, 5)  # 1 / 1
    m = corpus_metrics([a, b])
    assert m["wer"] == pytest.approx(100 / 6)
    assert m["rare_wer"] == pytest.approx(100 / 3)


def _spans_before_seqeval(words: list[str], tags: list[str]) -> Counter:
    """The hand-written BIO extraction slot_spans used before seqeval (the reference)."""
    spans: Counter = Counter()
    cur_type, cur_words = None, []
    for w, t in zip(words, tags, strict=False):
        if t.startswith("B-") or (t.startswith("I-") and t[2:] != cur_type):
            if cur_type:
                spans[(cur_type, " ".join(cur_words))] += 1
            cur_type, cur_words = t[2:], [w]
        elif t.startswith("I-"):
            cur_words.append(w)
        else:
            if cur_type:
                spans[(cur_type, " ".join(cur_words))] += 1
            cur_type, cur_words = None, []
    if cur_type:
        spans[(cur_type, " ".join(cur_words))] += 1
    return spans


# Well-formed tags, stray I- (I-a after O or after B-b), types with '-' and '_', and malformed
# tags (no type, no dash, IOBES letters, an extra dash): every sequence of up to 4 of them.
TAGS = ["O", "B-a", "I-a", "B-b", "I-b", "B-x-y", "I-x_y", "B-", "I-", "foo", "B", "E-a", "S-a"]


def test_slot_spans_is_the_hand_written_extraction_on_every_short_sequence():
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # seqeval warns on a tag it does not understand
        for length in range(5):
            words = [f"w{i % 3}" for i in range(length)]  # repeated words: spans are strings
            for tags in itertools.product(TAGS, repeat=length):
                assert slot_spans(words, list(tags)) == _spans_before_seqeval(words, list(tags))
                n += 1
    assert n == sum(len(TAGS) ** k for k in range(5))
    # more tags than words, more words than tags: both only read the common prefix
    assert slot_spans(["a"], ["B-x", "B-y"]) == {("x", "a"): 1}
    assert slot_spans(["a", "b"], ["B-x"]) == {("x", "a"): 1}


def test_slot_spans_and_slu():
    assert slot_spans(
        "play hey jude by queen".split(), ["O", "B-track", "I-track", "O", "B-artist"]
    ) == {("track", "hey jude"): 1, ("artist", "queen"): 1}
    u = UttCounts()
    add_slu(
        u,
        "PlayMusic",
        "play hey jude by queen".split(),
        ["O", "B-track", "I-track", "O", "B-artist"],
        "PlayMusic",
        "play hey dude by queen".split(),
        ["O", "B-track", "I-track", "O", "B-artist"],
    )
    # the track value is wrong as a word string, the artist is right
    assert (u.intent_correct, u.slot_tp, u.slot_pred, u.slot_gold) == (1, 1, 2, 2)
    m = corpus_metrics([u])
    assert m["intent_acc"] == 100.0 and m["slot_f1"] == pytest.approx(50.0)


def _utts(n_err: list[int]) -> list[UttCounts]:
    return [
        UttCounts(ref_words=10, errors=e, rare_ref=2, rare_errors=min(e, 2), common_ref=8)
        for e in n_err
    ]


def test_bootstrap_is_deterministic_under_seed():
    utts = _utts([0, 1, 2, 3, 5, 0, 0, 1, 4, 2])
    a = bootstrap_ci(utts, "wer", num_samples=500, seed=3)
    assert a == bootstrap_ci(utts, "wer", num_samples=500, seed=3)
    assert a != bootstrap_ci(utts, "wer", num_samples=500, seed=4)
    assert a[0] <= corpus_metrics(utts)["wer"] <= a[1]
    assert bootstrap_ci(utts, "intent_acc") is None  # no NLU predictions


def test_paired_bootstrap():
    a = _utts([3, 2, 4, 1, 3, 2, 5, 2])
    better = _utts([1, 1, 2, 0, 1, 1, 2, 1])
    assert paired_bootstrap(a, better, "wer") == 0.0
    assert paired_bootstrap(a, a, "wer") == 1.0
    assert paired_bootstrap(better, a, "wer") == 1.0
    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap(a, better[:3], "wer")
    d = paired_bootstrap_diff(a, better, "wer")
    wa, wb = corpus_metrics(a)["wer"], corpus_metrics(better)["wer"]
    assert d["diff"] == pytest.approx(wb - wa) and d["p_b_better"] == 0.0
    lo, hi = d["diff_ci95"]
    assert lo <= wb - wa <= hi < 0
    assert paired_bootstrap_diff(a, a, "wer")["diff_ci95"] == [0.0, 0.0]
    assert paired_bootstrap_diff(a, a, "intent_acc") is None  # no NLU predictions


def _utts(errs: list[int], ref: int = 4) -> list:
    from rescoring.metrics import UttCounts

    return [UttCounts(ref_words=ref, errors=e, rare_ref=1, rare_errors=min(e, 1)) for e in errs]


def test_seed_bootstrap_with_one_seed_is_the_utterance_bootstrap():
    import numpy as np

    from rescoring.metrics import (
        bootstrap_ci,
        bootstrap_indices,
        paired_bootstrap_diff,
        paired_bootstrap_diff_seeds,
        seed_bootstrap_ci,
    )

    def by_hand(utts, idx, m):  # the plain utterance bootstrap, written out
        fields = {k: np.array([getattr(u, k) for u in utts], float)[idx].sum(axis=1) for k in
                  ("errors", "ref_words", "rare_errors", "rare_ref")}  # fmt: skip
        num, den = {"wer": ("errors", "ref_words"), "rare_wer": ("rare_errors", "rare_ref")}[m]
        return 100 * (fields[num] / fields[den])

    a, b = _utts([1, 2, 0, 3, 1, 0, 2]), _utts([1, 1, 0, 2, 1, 1, 0])
    idx = bootstrap_indices(len(a), 1000, 0)
    for m in ("wer", "rare_wer"):
        assert paired_bootstrap_diff_seeds([a], [b], m) == paired_bootstrap_diff(a, b, m)
        assert seed_bootstrap_ci([a], m) == bootstrap_ci(a, m)
        va, vb = by_hand(a, idx, m), by_hand(b, idx, m)
        q = [100 * (1 - 0.95) / 2, 100 * (1 + 0.95) / 2]  # bootstrap_ci's level 0.95
        assert bootstrap_ci(a, m) == tuple(float(x) for x in np.percentile(va, q))
        d = paired_bootstrap_diff(a, b, m)
        assert d["p_b_better"] == float((vb >= va).mean())
        assert d["diff_ci95"] == [float(x) for x in np.percentile(vb - va, [2.5, 97.5])]


def test_seed_bootstrap_pools_seeds_and_counts_their_spread():
    from rescoring.metrics import corpus_metrics, paired_bootstrap_diff_seeds, seed_bootstrap_ci

    base = _utts([2] * 40)
    s1, s2 = _utts([1] * 40), _utts([3] * 40)  # mean = base, but far apart
    close = [_utts([2] * 40), _utts([2] * 40)]
    mean = (corpus_metrics(s1)["wer"] + corpus_metrics(s2)["wer"]) / 2
    d = paired_bootstrap_diff_seeds([base], [s1, s2], "wer")
    assert d["diff"] == pytest.approx(mean - corpus_metrics(base)["wer"]) == pytest.approx(0)
    lo, hi = d["diff_ci95"]
    assert lo < -10 and hi > 10  # the seed spread is in the interval
    assert paired_bootstrap_diff_seeds([base], close, "wer")["diff_ci95"] == [0.0, 0.0]
    wide, narrow = seed_bootstrap_ci([s1, s2], "wer"), seed_bootstrap_ci(close, "wer")
    assert wide[1] - wide[0] > 20 and narrow == (50.0, 50.0)
    better = [_utts([1] * 40), _utts([1] * 39 + [2])]
    assert paired_bootstrap_diff_seeds([base], better, "wer")["p_b_better"] == 0.0
    with pytest.raises(ValueError, match="same 40 utterances"):
        paired_bootstrap_diff_seeds([base], [base[:39]], "wer")
