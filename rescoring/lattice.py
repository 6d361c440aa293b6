"""Read n-best lists stored as kaldifst lattices (the lattice-as-n-best case).

Convention (rescoring/README.md, "Lattice convention"; the ASR stage writes it):

* one Kaldi archive per set, ``lattices-{set}.ark``, written with ``kaldifst.VectorFstWriter``
  (``ark:`` wspecifier), keyed by utterance id; one ``kaldifst.StdVectorFst`` per utterance;
* a symbol table ``words-{set}.txt`` (or ``words.txt``) in the same folder, ``word id`` per line,
  ``<eps> 0``;
* each FST is an acyclic acceptor in the tropical semiring whose **output labels are word ids**
  (0 = epsilon, skipped); every complete path (start state to a final state) is one hypothesis;
* the **cost of a path** (sum of its arc weights plus the final weight) is ``-am_score``
  (natural-log probability, negated). Where the cost sits on the path does not matter, so the
  ASR stage's linear chains (cost on the first arc) and prefix trees both read correctly;
* an empty hypothesis is a path of epsilon arcs only. Paths with the same word sequence are
  merged by log-sum-exp of their am_scores (as in our JSONL n-best); hypotheses are returned
  best first.

This reader works on kaldifst directly, so it does not depend on :mod:`asr.lattice`.

Usage:
    nbest = read_lattice_archive("lattices-dev.ark", "words-dev.txt")
    # {"utt-1": [("play jazz", -1.5), ("play jas", -2.0)], ...}
"""

from __future__ import annotations

import math
from pathlib import Path

import kaldifst

from common.io import InputError, open_text

MAX_PATHS = 100_000  # an n-best lattice holds N paths; more means this is not one


def read_word_table(path: str | Path) -> dict[int, str]:
    """``word id`` per line -> ``{id: word}``; errors carry file:line.

    Raises:
        InputError: a missing file, text that is not UTF-8, a line that is not ``word id`` with
            an integer id, or an id given to two different words.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: symbol table not found")
    table: dict[int, str] = {}
    first: dict[int, int] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise InputError(f"{path}:{lineno}: expected 'word id', got {line.rstrip()!r}")
            wid = int(parts[1])
            if wid in table and table[wid] != parts[0]:
                raise InputError(
                    f"{path}:{lineno}: id {wid} is {parts[0]!r} here and {table[wid]!r} at "
                    f"line {first[wid]}"
                )
            table[wid] = parts[0]
            first.setdefault(wid, lineno)
    return table


def fst_paths(
    fst: kaldifst.StdVectorFst, words: dict[int, str], where: str
) -> list[tuple[str, float]]:
    """All complete paths of an acyclic acceptor as ``(word string, am_score)``, best first.

    Args:
        fst: the utterance's lattice.
        words: word-id -> word (id 0 is epsilon).
        where: ``"archive[utt]"``, for error messages.

    Returns:
        Distinct word sequences with ``am_score = -path cost`` (duplicates merged by
        log-sum-exp), sorted by am_score, highest first.
    """
    start = fst.start
    if start < 0 or fst.num_states == 0:
        raise InputError(f"{where}: lattice has no start state")
    scores: dict[str, list[float]] = {}
    n_paths = 0
    # Iterative DFS; `on_path` detects cycles (a cyclic FST has infinitely many paths).
    stack: list[tuple[int, float, tuple[str, ...], frozenset]] = [(start, 0.0, (), frozenset())]
    while stack:
        state, cost, seq, on_path = stack.pop()
        if state in on_path:
            raise InputError(f"{where}: lattice has a cycle through state {state}")
        final = float(fst.final(state).value)
        if math.isfinite(final):
            n_paths += 1
            if n_paths > MAX_PATHS:
                raise InputError(f"{where}: more than {MAX_PATHS} paths; not an n-best lattice")
            scores.setdefault(" ".join(seq), []).append(-(cost + final))
        on = on_path | {state}
        for arc in kaldifst.ArcIterator(fst, state):
            label = arc.olabel
            if label and label not in words:
                raise InputError(f"{where}: word id {label} is not in the symbol table")
            nxt_seq = seq + (words[label],) if label else seq
            stack.append((arc.nextstate, cost + float(arc.weight.value), nxt_seq, on))
    if not scores:
        raise InputError(f"{where}: lattice has no complete path (no reachable final state)")
    merged = []
    for text, vals in scores.items():
        m = max(vals)
        if not math.isfinite(m) or any(math.isnan(v) for v in vals):
            raise InputError(f"{where}: path of {text!r} has a cost that is not finite ({-m})")
        merged.append((text, m + math.log(sum(math.exp(v - m) for v in vals))))
    merged.sort(key=lambda x: -x[1])
    return merged


def read_lattice_archive(
    ark_path: str | Path, words_path: str | Path
) -> dict[str, list[tuple[str, float]]]:
    """Read every utterance of a lattice archive (convention in the module docstring)."""
    ark_path = Path(ark_path)
    if not ark_path.is_file():
        raise InputError(f"{ark_path}: lattice archive not found")
    words = read_word_table(words_path)
    out: dict[str, list[tuple[str, float]]] = {}
    try:
        reader = kaldifst.SequentialVectorFstReader(f"ark:{ark_path}")
    except Exception as e:  # kaldifst raises RuntimeError on a corrupt archive
        raise InputError(f"{ark_path}: cannot read as a kaldifst archive: {e}") from None
    while not reader.done:
        key = reader.key
        if key in out:
            raise InputError(f"{ark_path}: duplicate utterance id {key!r}")
        out[key] = fst_paths(reader.value, words, f"{ark_path}[{key}]")
        reader.next()
    if not out:
        raise InputError(f"{ark_path}: no lattices in the archive")
    return out
