"""WER, rare-word / common-word WER, SLU metrics, bootstrap intervals and paired tests.

Rare-word WER follows the B-WER / U-WER split of fbai-speech ``is21_deep_bias/score.py``
(Le et al., 2021, "Contextualized streaming end-to-end speech recognition with trie-based deep
biasing"): after the toolkit's one alignment (:func:`common.wer.align`), a substitution or
deletion is charged to the *reference* word's class, an insertion to the *inserted* word's
class; rare-word WER = rare errors / rare reference words, common-word WER likewise. A word is
rare when it occurs fewer than K times in the ASR training transcripts (OOV included,
:func:`common.wer.is_rare`).

SLU metrics of a chosen hypothesis: intent accuracy, and slot F1 over (slot type, value)
pairs where the value is the slot's word string in the hypothesis (prediction) or reference
(gold; spans from the BIO tags by seqeval's ``get_entities``): an exact-match, span-level F1
computed on words rather than positions, as SLURP's SLU-F1 does in spirit (without its
partial-match credit), so a slot is right when its words are right even if other words of the
sentence are not.

Confidence intervals: percentile bootstrap over utterances (``B`` resamples, seeded). Paired
bootstrap (Koehn, 2004; Bisani & Ney, 2004): the same resamples for both systems; the p-value
of "B is better than A" is the share of resamples in which B's error rate is not lower.

Usage:
    utts = [utt_counts(ref, hyp, counts, K) for ref, hyp in pairs]
    m = corpus_metrics(utts); ci = bootstrap_ci(utts, "wer", seed=0)
    p = paired_bootstrap(utts_a, utts_b, "rare_wer")
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from common.wer import EPS, align, is_rare


@dataclass
class UttCounts:
    """Error counts of one utterance (also the unit of bootstrap resampling)."""

    ref_words: int = 0
    errors: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    rare_ref: int = 0
    rare_errors: int = 0
    common_ref: int = 0
    common_errors: int = 0
    intent_correct: int = 0
    slot_tp: int = 0
    slot_pred: int = 0
    slot_gold: int = 0
    has_nlu: int = 0


def utt_counts(ref: list[str], hyp: list[str], counts: dict[str, int], threshold: int) -> UttCounts:
    """Align ``hyp`` to ``ref`` and count overall, rare and common errors."""
    u = UttCounts(ref_words=len(ref))
    for w in ref:
        if is_rare(w, counts, threshold):
            u.rare_ref += 1
        else:
            u.common_ref += 1
    for r, h in align(ref, hyp):
        if r == h:
            continue
        u.errors += 1
        if r == EPS:
            u.ins += 1
            charged = h
        else:
            charged = r
            if h == EPS:
                u.dels += 1
            else:
                u.subs += 1
        if is_rare(charged, counts, threshold):
            u.rare_errors += 1
        else:
            u.common_errors += 1
    return u


def _bio(tag: str) -> str:
    """``B-x`` / ``I-x`` (a non-empty type) as it is; anything else is outside a slot (``O``)."""
    return tag if tag.startswith(("B-", "I-")) and len(tag) > 2 else "O"


def slot_spans(words: list[str], tags: list[str]) -> Counter:
    """BIO tags -> multiset of ``(slot_type, "word string")``; a stray I- starts a span.

    The spans are seqeval's (``get_entities``, the conlleval rules, default non-strict mode).
    A tag that is not ``B-<type>`` / ``I-<type>`` counts as ``O``, and tags beyond the last
    word are ignored. tests/rescoring/test_metrics.py checks every tag sequence of up to four
    tags (well-formed and malformed) against the hand-written extraction this replaced.
    """
    # Imported here: seqeval loads scikit-learn (~0.7 s), which only scoring needs.
    from seqeval.metrics.sequence_labeling import get_entities

    tags = [_bio(t) for t in tags[: len(words)]]
    return Counter(
        (slot_type, " ".join(words[start : end + 1]))
        for slot_type, start, end in get_entities(tags)
    )


def add_slu(
    u: UttCounts,
    gold_intent: str,
    gold_words: list[str],
    gold_tags: list[str] | None,
    pred_intent: str,
    pred_words: list[str],
    pred_tags: list[str],
) -> None:
    """Add intent and slot counts of one utterance to ``u``.

    ``gold_tags=None`` (a corpus without slot labels) counts the intent only: the utterance
    adds nothing to slot F1.
    """
    u.has_nlu = 1
    u.intent_correct = int(gold_intent == pred_intent)
    if gold_tags is None:
        return
    gold, pred = slot_spans(gold_words, gold_tags), slot_spans(pred_words, pred_tags)
    u.slot_tp = sum((gold & pred).values())
    u.slot_pred = sum(pred.values())
    u.slot_gold = sum(gold.values())


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1e-12), np.nan)


METRICS = ("wer", "rare_wer", "common_wer", "intent_acc", "slot_f1")


def _matrix(utts: list[UttCounts]) -> dict[str, np.ndarray]:
    fields = UttCounts.__dataclass_fields__
    return {k: np.array([getattr(u, k) for u in utts], dtype=np.float64) for k in fields}


_METRIC_FNS = {
    "wer": lambda s: _ratio(s["errors"], s["ref_words"]),
    "rare_wer": lambda s: _ratio(s["rare_errors"], s["rare_ref"]),
    "common_wer": lambda s: _ratio(s["common_errors"], s["common_ref"]),
    "intent_acc": lambda s: _ratio(s["intent_correct"], s["has_nlu"]),
    "slot_f1": lambda s: _ratio(2 * s["slot_tp"], s["slot_pred"] + s["slot_gold"]),
}
assert tuple(_METRIC_FNS) == METRICS


def _metric_from_sums(name: str, s: dict[str, np.ndarray]) -> np.ndarray:
    """Metric (in %) from summed counts; arrays broadcast over bootstrap resamples."""
    return 100 * _METRIC_FNS[name](s)


def corpus_metrics(utts: list[UttCounts]) -> dict[str, float | int]:
    """Corpus-level metrics (percent) plus the raw totals."""
    m = _matrix(utts)
    sums = {k: v.sum() for k, v in m.items()}
    out: dict[str, float | int] = {k: int(v) for k, v in sums.items()}
    for name in METRICS:
        val = float(_metric_from_sums(name, sums))
        out[name] = None if np.isnan(val) else val
    out["utterances"] = len(utts)
    out["rare_share"] = 100 * sums["rare_ref"] / max(1, sums["ref_words"])
    return out


def _resample_sums(m: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx].sum(axis=1) for k, v in m.items()}


def bootstrap_indices(n: int, num_samples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(num_samples, n)`` utterance indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(num_samples, n))


def bootstrap_ci(
    utts: list[UttCounts], metric: str, num_samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric`` (percent), or None if undefined (the
    one-seed case of :func:`seed_bootstrap_ci`)."""
    return seed_bootstrap_ci([utts], metric, num_samples, seed, level)


def paired_bootstrap(
    utts_a: list[UttCounts],
    utts_b: list[UttCounts],
    metric: str,
    num_samples: int = 1000,
    seed: int = 0,
) -> float | None:
    """p-value of "system B is better than A" (lower error; higher for accuracy / F1).

    Both lists must hold the same utterances in the same order.
    """
    res = paired_bootstrap_diff(utts_a, utts_b, metric, num_samples, seed)
    return None if res is None else res["p_b_better"]


def paired_bootstrap_diff(
    utts_a: list[UttCounts],
    utts_b: list[UttCounts],
    metric: str,
    num_samples: int = 1000,
    seed: int = 0,
) -> dict | None:
    """Paired bootstrap of B vs A on the same utterances (same resamples for both systems).

    Returns ``{"p_b_better", "diff", "diff_ci95"}``: the share of resamples in which B is *not*
    better than A, the corpus-level difference B - A (in points) and its 95% percentile
    interval. ``None`` when the metric is undefined (no utterances, no rare words, no NLU).
    The one-seed case of :func:`paired_bootstrap_diff_seeds`.
    """
    if len(utts_a) != len(utts_b):
        raise ValueError(
            f"paired bootstrap needs the same utterances ({len(utts_a)} vs {len(utts_b)})"
        )
    return paired_bootstrap_diff_seeds([utts_a], [utts_b], metric, num_samples, seed)


def per_group_wer(
    utts: list[UttCounts], groups: list[str], num_samples: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """WER and rare-word WER per group label (e.g. the gold intent), with 95% intervals."""
    out = {}
    for g in sorted(set(groups)):
        sel = [u for u, gg in zip(utts, groups, strict=True) if gg == g]
        m = corpus_metrics(sel)
        out[g] = {
            "utterances": len(sel),
            "wer": m["wer"],
            "rare_wer": m["rare_wer"],
            "ci95": {k: bootstrap_ci(sel, k, num_samples, seed) for k in ("wer", "rare_wer")},
        }
    return out


def _seed_sums(
    seeds: list[list[UttCounts]], idx: np.ndarray, draws: np.ndarray
) -> dict[str, np.ndarray]:
    """Counts summed over the resampled utterances ``idx`` (R, n) of the resampled seeds
    ``draws`` (R, S): the seed-pooled sums of each resample."""
    per_seed = [_resample_sums(_matrix(u), idx) for u in seeds]  # S x {field: (R,)}
    out = {}
    for k in per_seed[0]:
        stacked = np.stack([p[k] for p in per_seed], axis=1)  # (R, S)
        out[k] = np.take_along_axis(stacked, draws, axis=1).sum(axis=1)
    return out


def _pooled(seeds: list[list[UttCounts]]) -> dict[str, np.ndarray]:
    """Counts summed over the utterances and seeds."""
    mats = [_matrix(u) for u in seeds]
    return {k: sum(m[k].sum() for m in mats) for k in mats[0]}


def _check_seeds(seeds: list[list[UttCounts]], n: int, what: str) -> None:
    if not seeds:
        raise ValueError(f"{what}: no seeds")
    if any(len(u) != n for u in seeds):
        raise ValueError(f"{what}: every seed must be scored on the same {n} utterances")


def seed_bootstrap_ci(
    seeds: list[list[UttCounts]],
    metric: str,
    num_samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Interval of a system trained with several seeds: each resample draws utterances and,
    independently, the seeds (both with replacement); the metric of the drawn seeds' pooled
    counts. With one seed this is :func:`bootstrap_ci`."""
    n = len(seeds[0]) if seeds else 0
    _check_seeds(seeds, n, "seed_bootstrap_ci")
    if n == 0:
        return None
    idx = bootstrap_indices(n, num_samples, seed)
    draws = np.random.default_rng([seed, 1]).integers(0, len(seeds), (num_samples, len(seeds)))
    vals = _metric_from_sums(metric, _seed_sums(seeds, idx, draws))
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return None
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def paired_bootstrap_diff_seeds(
    seeds_a: list[list[UttCounts]],
    seeds_b: list[list[UttCounts]],
    metric: str,
    num_samples: int = 1000,
    seed: int = 0,
) -> dict | None:
    """:func:`paired_bootstrap_diff` for systems trained with several seeds (a list of
    per-utterance counts per seed, all on the same utterances): each resample draws the
    utterances (the same for both systems) and, for each system independently, its seeds with
    replacement, and compares the metrics of the drawn seeds' pooled counts. So the test
    accounts for the seed spread as well as the utterances; the point values are the seed
    means (pooled counts: for the error rates exactly the mean of the per-seed rates). With one
    seed on each side it equals :func:`paired_bootstrap_diff` (same resamples)."""
    n = len(seeds_a[0]) if seeds_a else 0
    _check_seeds(seeds_a, n, "paired_bootstrap_diff_seeds (A)")
    _check_seeds(seeds_b, n, "paired_bootstrap_diff_seeds (B)")
    if n == 0:
        return None
    va = float(_metric_from_sums(metric, _pooled(seeds_a)))
    vb = float(_metric_from_sums(metric, _pooled(seeds_b)))
    idx = bootstrap_indices(n, num_samples, seed)
    rng = np.random.default_rng([seed, 1])
    draws_a = rng.integers(0, len(seeds_a), (num_samples, len(seeds_a)))
    draws_b = rng.integers(0, len(seeds_b), (num_samples, len(seeds_b)))
    a = _metric_from_sums(metric, _seed_sums(seeds_a, idx, draws_a))
    b = _metric_from_sums(metric, _seed_sums(seeds_b, idx, draws_b))
    ok = ~(np.isnan(a) | np.isnan(b))
    if not ok.any() or np.isnan(va) or np.isnan(vb):
        return None
    higher_is_better = metric in ("intent_acc", "slot_f1")
    not_better = (b[ok] <= a[ok]) if higher_is_better else (b[ok] >= a[ok])
    lo, hi = np.percentile(b[ok] - a[ok], [2.5, 97.5])
    return {
        "p_b_better": float(not_better.mean()),
        "diff": float(vb - va),
        "diff_ci95": [float(lo), float(hi)],
    }
