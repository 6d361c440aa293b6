"""The toolkit's one word-error module: alignment, WER counts, the rare-word rule, icefall files.

Every WER in the toolkit - the RNN-T's dev WER during training, ``decode-asr``'s summaries and
oracle, the rescorers' oracle selection, ``score-wer``'s overall / rare-word / common-word WER -
goes through :func:`align`, so all of them charge the same words for the same errors.

Why kaldialign and not jiwer (the design names jiwer): both find a minimum-edit alignment, but
among equally cheap alignments they choose differently. On random word strings the two choices
differ in 35% of pairs and the substitution / deletion / insertion split in 12%; the total error
count never differs. Which reference word is charged decides the rare-word WER (B-WER / U-WER),
and icefall writes its ``errs-*`` files with kaldialign, so switching would change the published
rare-word numbers and make our ``errs`` files disagree with icefall's for the same hypotheses.
``tests/common/test_wer.py`` checks against jiwer that the total error counts agree.

The rare-word rule (the benchmark's definition, used by ``compute-rare-words`` and the scorer):
a reference word is rare when it occurs fewer than K times in the ASR training transcripts,
OOV words (count 0) included: :func:`is_rare`.

Usage:
    stats = compute_wer([(utt_id, ref_words, hyp_words), ...])
    print(stats.kaldi_line())       # %WER 4.91% [ 2581 / 52576, 300 ins, 200 del, 2081 sub ]
    write_results(out_dir, "test", "greedy", results)
    counts = read_word_counts("data/lang/word_counts.txt"); is_rare("zurich", counts, 5)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import kaldialign

from common.io import InputError, atomic_write, open_text

EPS = "*"


@dataclass
class WerStats:
    ref_words: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / max(self.ref_words, 1)

    def kaldi_line(self) -> str:
        return (
            f"%WER {self.wer:.2f}% [ {self.errors} / {self.ref_words}, {self.ins} ins, "
            f"{self.dels} del, {self.subs} sub ]"
        )


def align(ref: list[str], hyp: list[str]) -> list[tuple[str, str]]:
    """Minimum-edit alignment as ``(ref_word, hyp_word)`` pairs; :data:`EPS` marks a gap."""
    return kaldialign.align(ref, hyp, EPS)


def num_errors(ref: list[str], hyp: list[str]) -> int:
    """Word errors (substitutions + deletions + insertions) of ``hyp`` against ``ref``."""
    return sum(1 for r, h in align(ref, hyp) if r != h)


def is_rare(word: str, counts: dict[str, int], threshold: int) -> bool:
    """The benchmark's rule: fewer than ``threshold`` training occurrences (OOV included)."""
    return counts.get(word, 0) < threshold


def read_word_counts(path: str | Path) -> dict[str, int]:
    """Read ``word_counts.txt`` (``word count`` per line); errors name the file and line."""
    counts: dict[str, int] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise InputError(f"{path}:{lineno}: expected 'word count', got {line.strip()!r}")
            counts[parts[0]] = int(parts[1])
    return counts


def count_errors(ref: list[str], hyp: list[str]) -> WerStats:
    s = WerStats(ref_words=len(ref))
    for r, h in align(ref, hyp):
        if r == EPS:
            s.ins += 1
        elif h == EPS:
            s.dels += 1
        elif r != h:
            s.subs += 1
    return s


def compute_wer(results: list[tuple[str, list[str], list[str]]]) -> WerStats:
    """Corpus WER of ``(utt_id, ref_words, hyp_words)`` triples."""
    total = WerStats()
    for _, ref, hyp in results:
        s = count_errors(ref, hyp)
        total.ref_words += s.ref_words
        total.ins += s.ins
        total.dels += s.dels
        total.subs += s.subs
    return total


def oracle_wer(refs: dict[str, list[str]], nbest: dict[str, list[list[str]]]) -> WerStats:
    """WER of the hypothesis with the fewest errors in each n-best list."""
    total = WerStats()
    for uid, ref in refs.items():
        cands = nbest.get(uid) or [[]]
        best = min((count_errors(ref, h) for h in cands), key=lambda s: s.errors)
        total.ref_words += best.ref_words
        total.ins += best.ins
        total.dels += best.dels
        total.subs += best.subs
    return total


def write_results(
    out_dir: str | Path, test_set: str, suffix: str, results: list[tuple[str, list[str], list[str]]]
) -> WerStats:
    """Write ``recogs-``, ``errs-`` and ``wer-summary-{set}-{suffix}.txt`` (icefall layout)."""
    out_dir = Path(out_dir)
    results = sorted(results)
    stats = compute_wer(results)
    with atomic_write(out_dir / f"recogs-{test_set}-{suffix}.txt") as f:
        for uid, ref, hyp in results:
            f.write(f"{uid}:\tref={ref}\n{uid}:\thyp={hyp}\n")
    subs: Counter = Counter()
    ins: Counter = Counter()
    dels: Counter = Counter()
    words: Counter = Counter()  # word -> [corr, ref_err, hyp_err] flattened as keys
    per_word: dict[str, list[int]] = {}
    with atomic_write(out_dir / f"errs-{test_set}-{suffix}.txt") as f:
        f.write(f"{stats.kaldi_line()}\n\nPER-UTT DETAILS: corr or (ref->hyp)\n")
        for uid, ref, hyp in results:
            ali = align(ref, hyp)
            parts = []
            for r, h in ali:
                if r == h:
                    parts.append(r)
                    per_word.setdefault(r, [0, 0, 0])[0] += 1
                    continue
                parts.append(f"({r}->{h})")
                if r == EPS:
                    ins[h] += 1
                    per_word.setdefault(h, [0, 0, 0])[2] += 1
                elif h == EPS:
                    dels[r] += 1
                    per_word.setdefault(r, [0, 0, 0])[1] += 1
                else:
                    subs[(r, h)] += 1
                    per_word.setdefault(r, [0, 0, 0])[1] += 1
                    per_word.setdefault(h, [0, 0, 0])[2] += 1
            f.write(f"{uid}:\t{' '.join(parts)}\n")
        f.write("\nSUBSTITUTIONS: count ref -> hyp\n")
        for (r, h), c in subs.most_common():
            f.write(f"{c}   {r} -> {h}\n")
        f.write("\nDELETIONS: count ref\n")
        for w, c in dels.most_common():
            f.write(f"{c}   {w}\n")
        f.write("\nINSERTIONS: count hyp\n")
        for w, c in ins.most_common():
            f.write(f"{c}   {w}\n")
        f.write("\nPER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp\n")
        for w, (corr, ref_e, hyp_e) in sorted(
            per_word.items(), key=lambda kv: -(kv[1][1] + kv[1][2])
        ):
            f.write(f"{w}   {corr} {ref_e + hyp_e} {corr + ref_e} {corr + hyp_e}\n")
    del words
    with atomic_write(out_dir / f"wer-summary-{test_set}-{suffix}.txt") as f:
        f.write(f"settings\tWER\n{suffix}\t{stats.wer:.2f}\n")
    return stats
