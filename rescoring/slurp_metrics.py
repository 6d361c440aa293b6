"""SLURP's own SLU metrics: scenario / action / intent accuracy, span F1 and SLU-F1.

Our implementation of the definitions of SLURP's evaluation tool (pswietojanski/slurp,
``scripts/evaluation/``: ``evaluate.py``, ``metrics/metrics.py`` (``FMeasure``,
``SpanFMeasure``, ``SpanDistanceFMeasure``, ``SLUF1``, ``compute_metrics``),
``metrics/distance.py`` (``WordDistance``, ``CharDistance``) and ``util.py``
(``release2prediction``)); Bastianelli et al., EMNLP 2020, "SLURP: A Spoken Language
Understanding Resource Package". Same math, our code; micro averaging (the tool's default).

* **Scenario / action / intent accuracy.** SLURP scores scenario, action and
  ``"{scenario}_{action}"`` with ``FMeasure``: equal labels add a TP, different ones an FP (to
  the predicted label) and an FN (to the gold one), so micro P = R = F1 = correct / utterances,
  an accuracy. Our intents are ``"<scenario>_<action>"`` (:mod:`data_prep.slurp_jsonl`):
  scenario = the text before the first ``_``, action = the rest (``iot_hue_lightoff`` ->
  ``iot``, ``hue_lightoff``; no SLURP scenario holds a ``_``). An intent without ``_`` is
  scenario = the intent, action = ``""``.
* **Entities** are ``(type, filler)`` in sentence order, a filler being the span's words joined
  by one space (SLURP joins the gold tokens' lower-cased surfaces; our words are already
  normalised and lower-cased, gold and hypothesis alike). Spans come from the BIO tags by the
  rules of :func:`rescoring.metrics.slot_spans` (seqeval ``get_entities``).
* **Span F1** (``SpanFMeasure``): each predicted entity equal (type and filler) to a gold
  entity not yet used is a TP and uses it up, otherwise an FP; unused gold entities are FNs.
  (That is the multiset count of our ``slot_f1``: the two agree whenever both are defined.)
* **Distance F1** (``SpanDistanceFMeasure``), for distance ``d`` in {word, char}: predicted
  entities are taken in order; one whose type occurs among the gold entities not yet used is
  paired with the unused gold entity of that type at the lowest distance (ties: the first in
  sentence order), which is then used up, and adds TP += 1, FP += d, FN += d; a predicted
  entity whose type has no unused gold entity adds FP += 1; each gold entity left unused adds
  FN += 1. So a right-type entity with a wrong filler is not a full miss: it costs d.

  - word: ``d = WER(gold filler, predicted filler)`` (jiwer's ``wer``: word edit distance /
    gold words; above 1 when the prediction has more extra words than the gold has words,
    and kept so, as in SLURP);
  - char: ``d`` = character Levenshtein distance / the longer filler's length (textdistance's
    ``levenshtein.normalized_distance``; 0 for two empty strings), in [0, 1].
* **P, R, F1** (``compute_metrics``): P = TP / (TP + FP), R = TP / (TP + FN), each 0 when its
  denominator's terms are both 0; F1 = 2PR / (P + R), 0 when P = R = 0. Micro: from the
  counts summed over types and utterances.
* **SLU-F1** (``SLUF1``): F1 of the word-level and the char-level counts added together
  (TP_word + TP_char, FP_word + FP_char, FN_word + FN_char). ``slu_f1_word`` / ``slu_f1_char``
  are the two distance F1s (the paper's "Word-F1" / "Char-F1"), ``slu_f1`` the combination.

Our conventions on top: values are percentages; a metric is ``None`` when no utterance counts
for it (no utterance with NLU; for the entity metrics none whose gold has slots), where the
SLURP tool would print 0. With entity-scored utterances but no entity anywhere, the F1s are 0,
as in SLURP. Results equal the tool's up to floating-point summation order.

Usage:
    c = utt_slurp_counts("iot_hue_lightoff", gold_words, gold_tags, "iot_hue_lightup",
                         hyp_words, hyp_tags)
    m = slurp_corpus_metrics([c, ...]); ci = slurp_bootstrap_ci([c, ...], "slu_f1", 1000, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rescoring.metrics import _bio, bootstrap_indices


@dataclass
class SlurpCounts:
    """SLURP counts of one utterance (summable; the unit of bootstrap resampling)."""

    has_nlu: int = 0
    scenario_correct: int = 0
    action_correct: int = 0
    intent_correct: int = 0
    has_slots: int = 0  # the gold has slot labels: the utterance counts for the entity metrics
    span_tp: int = 0
    span_fp: int = 0
    span_fn: int = 0
    word_tp: float = 0.0
    word_fp: float = 0.0
    word_fn: float = 0.0
    char_tp: float = 0.0
    char_fp: float = 0.0
    char_fn: float = 0.0


SLURP_METRICS = ("scenario_acc", "action_acc", "span_f1", "slu_f1_word", "slu_f1_char", "slu_f1")


def split_intent(intent: str) -> tuple[str, str]:
    """``"scenario_action"`` -> ``(scenario, action)``, split at the first ``_``."""
    scenario, _, action = intent.partition("_")
    return scenario, action


def entities(words: Sequence[str], tags: Sequence[str]) -> list[tuple[str, str]]:
    """BIO tags -> ``[(type, filler), ...]`` in sentence order (the filler: words joined by " ")."""
    # Imported here, as in rescoring.metrics: seqeval loads scikit-learn.
    from seqeval.metrics.sequence_labeling import get_entities

    norm = [_bio(t) for t in tags[: len(words)]]
    return [(typ, " ".join(words[s : e + 1])) for typ, s, e in get_entities(norm)]


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (unit insert / delete / substitute) between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_distance(gold: str, pred: str) -> float:
    """WER of ``pred`` against ``gold`` over whitespace words (may exceed 1).

    A gold filler is never empty (a span has a word); for an empty one this returns 0 for an
    empty prediction and 1 otherwise (jiwer would raise).
    """
    g, p = gold.split(), pred.split()
    if not g:
        return float(bool(p))
    return edit_distance(g, p) / len(g)


def char_distance(gold: str, pred: str) -> float:
    """Character Levenshtein distance / the longer string's length; 0 for two empty strings."""
    longest = max(len(gold), len(pred))
    return edit_distance(gold, pred) / longest if longest else 0.0


DISTANCES = {"word": word_distance, "char": char_distance}


def span_counts(gold: list[tuple[str, str]], pred: list[tuple[str, str]]) -> tuple[int, int, int]:
    """Exact-match ``(TP, FP, FN)`` of SLURP's ``SpanFMeasure``."""
    left = list(gold)
    tp = fp = 0
    for ent in pred:
        if ent in left:
            left.remove(ent)
            tp += 1
        else:
            fp += 1
    return tp, fp, len(left)


def distance_counts(
    gold: list[tuple[str, str]], pred: list[tuple[str, str]], distance: str
) -> tuple[float, float, float]:
    """``(TP, FP, FN)`` of SLURP's ``SpanDistanceFMeasure`` with the ``word`` or ``char`` distance."""
    dist = DISTANCES[distance]
    left = list(gold)
    tp = fp = fn = 0.0
    for typ, filler in pred:
        best, best_d = None, float("inf")
        for k, (gtyp, gfill) in enumerate(left):
            if gtyp == typ:
                d = dist(gfill, filler)
                if d < best_d:
                    best, best_d = k, d
        if best is None:
            fp += 1
            continue
        del left[best]
        tp += 1
        fp += best_d
        fn += best_d
    return tp, fp, fn + len(left)


def utt_slurp_counts(
    gold_intent: str,
    gold_words: list[str],
    gold_tags: list[str] | None,
    pred_intent: str,
    pred_words: list[str],
    pred_tags: list[str],
) -> SlurpCounts:
    """SLURP counts of one utterance; ``gold_tags=None`` counts the intent parts only."""
    gs, ga = split_intent(gold_intent)
    ps, pa = split_intent(pred_intent)
    c = SlurpCounts(
        has_nlu=1,
        scenario_correct=int(gs == ps),
        action_correct=int(ga == pa),
        intent_correct=int(f"{gs}_{ga}" == f"{ps}_{pa}"),
    )
    if gold_tags is None:
        return c
    gold, pred = entities(gold_words, gold_tags), entities(pred_words, pred_tags)
    c.has_slots = 1
    c.span_tp, c.span_fp, c.span_fn = span_counts(gold, pred)
    c.word_tp, c.word_fp, c.word_fn = distance_counts(gold, pred, "word")
    c.char_tp, c.char_fp, c.char_fn = distance_counts(gold, pred, "char")
    return c


def prf(tp, fp, fn):
    """SLURP's ``compute_metrics`` (fractions, not percent); numpy arrays broadcast."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where((tp == 0) & (fp == 0), 0.0, tp / (tp + fp))
        r = np.where((tp == 0) & (fn == 0), 0.0, tp / (tp + fn))
        f = np.where((p == 0) & (r == 0), 0.0, 2 * p * r / (p + r))
    return p, r, f


def _f1(s: dict[str, np.ndarray], *kinds: str) -> np.ndarray:
    tp, fp, fn = (sum(s[f"{k}_{x}"] for k in kinds) for x in ("tp", "fp", "fn"))
    return np.where(s["has_slots"] > 0, 100 * prf(tp, fp, fn)[2], np.nan)


def _acc(s: dict[str, np.ndarray], name: str) -> np.ndarray:
    n = s["has_nlu"]
    return np.where(n > 0, 100 * s[name] / np.maximum(n, 1), np.nan)


_FNS = {
    "scenario_acc": lambda s: _acc(s, "scenario_correct"),
    "action_acc": lambda s: _acc(s, "action_correct"),
    "intent_acc": lambda s: _acc(s, "intent_correct"),
    "span_f1": lambda s: _f1(s, "span"),
    "slu_f1_word": lambda s: _f1(s, "word"),
    "slu_f1_char": lambda s: _f1(s, "char"),
    "slu_f1": lambda s: _f1(s, "word", "char"),
}


def _matrix(counts: list[SlurpCounts]) -> dict[str, np.ndarray]:
    return {
        k: np.array([getattr(c, k) for c in counts], dtype=np.float64)
        for k in SlurpCounts.__dataclass_fields__
    }


def slurp_corpus_metrics(counts: list[SlurpCounts]) -> dict[str, float | None]:
    """Corpus values (percent, ``None`` when undefined) of :data:`SLURP_METRICS` and intent_acc."""
    sums = {k: v.sum() for k, v in _matrix(counts).items()}
    out: dict[str, float | None] = {}
    for name, fn in _FNS.items():
        val = float(fn(sums))
        out[name] = None if np.isnan(val) else val
    return out


def slurp_totals(counts: list[SlurpCounts]) -> dict[str, float | int]:
    """The summed counts (integers for the integer fields)."""
    out: dict[str, float | int] = {}
    for k, f in SlurpCounts.__dataclass_fields__.items():
        total = sum(getattr(c, k) for c in counts)
        out[k] = int(total) if f.type in (int, "int") else float(total)
    return out


def slurp_bootstrap_ci(
    counts: list[SlurpCounts], metric: str, num_samples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of ``metric`` (percent), or None if undefined.

    Drawn with :func:`rescoring.metrics.bootstrap_indices`, so with the same seed the resamples
    are those of score-wer's other intervals.
    """
    if not counts:
        return None
    m = _matrix(counts)
    idx = bootstrap_indices(len(counts), num_samples, seed)
    vals = _FNS[metric]({k: v[idx].sum(axis=1) for k, v in m.items()})
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)
