"""N-best lists as OpenFst lattices: the one writer and the one reader (kaldifst backend).

The ASR stage writes every set's n-best lists with :func:`write_nbest_lattices`; rescoring reads
them, or another recogniser's lattices, with :func:`read_lattice_archive`. Both live here, in one
small module of ``common`` that imports only kaldifst, the standard library and ``common``, so a
k2 backend can be added behind the same two functions.

Convention (rescoring/README.md, "Lattice convention"):

* one Kaldi archive per set, ``lattices-{set}.ark`` (``kaldifst.VectorFstWriter``, ``ark:``
  wspecifier), keyed by utterance id; one ``kaldifst.StdVectorFst`` (tropical semiring) each;
* a symbol table ``words-{set}.txt`` (or ``words.txt``) in the same folder: ``word id`` per line,
  ``<eps> 0``;
* each FST is an acyclic acceptor whose **output labels are word ids** (0 = epsilon, skipped);
  every complete path (start state to a final state) is one hypothesis;
* the **cost of a path** (its arc weights plus the final weight) is ``-am_score`` (natural-log
  probability, negated; ``decode-asr`` writes the first-pass score the n-best was ranked by,
  with its length and biasing bonuses); where the cost sits does not matter. The writer makes
  linear chains from the start state, one per hypothesis in n-best order, the cost on the first
  arc, final weight 0; an empty hypothesis is one epsilon arc carrying the cost;
* the reader merges paths with the same word sequence by log-sum-exp of their am_scores
  (:func:`common.numeric.logsumexp`) and returns hypotheses best first; equal scores keep the
  order of the paths' arcs (so the writer's n-best comes back in its own order). Weights are
  stored as 32-bit floats: a score read back equals the written one to about 1e-6 relative.

The reader rejects, naming ``archive[utt]`` or ``file:line``: a cycle, no complete path, a word
id missing from the table, a malformed table line or one id given to two words, a table that is
not UTF-8, a path cost that is not finite, and more than :data:`MAX_PATHS` paths.

Usage:
    write_nbest_lattices("lattices-dev.ark", "words-dev.txt", {utt: [(words, am_score), ...]})
    nbest = read_lattice_archive("lattices-dev.ark", "words-dev.txt")
    # {"utt-1": [("play jazz", -1.5), ("play jas", -2.0)], ...}
"""

from __future__ import annotations

import math
from pathlib import Path

import kaldifst

from common.io import InputError, atomic_path, atomic_write, open_text
from common.numeric import logsumexp

EPS = "<eps>"
MAX_PATHS = 100_000  # an n-best lattice holds N paths; more means this is not one

Nbest = dict[str, list[tuple[str, float]]]  # utterance id -> [(word string, am_score)], best first


def first_pass_score(
    am_score: float,
    length_score: float | None = None,
    context_score: float | None = None,
    fusion_score: float | None = None,
) -> float:
    """The score a first pass ranked a hypothesis by, and the negated cost of its lattice path:
    ``am_score`` plus its contextual-biasing and length bonuses and its LM shallow-fusion score
    (None or absent: 0). The one formula of ``asr.decode.first_pass_total`` (n-best records) and
    ``rescoring.nbest.Hyp.first_pass_score``."""
    # asr.search's order
    return am_score + (context_score or 0.0) + (length_score or 0.0) + (fusion_score or 0.0)


# ---------------------------------------------------------------------------------- writing


def build_symbol_table(nbest: Nbest) -> dict[str, int]:
    """``<eps>`` = 0, then every word of ``nbest`` in sorted order from 1."""
    words = sorted({w for hyps in nbest.values() for text, _ in hyps for w in text.split()})
    return {EPS: 0, **{w: i for i, w in enumerate(words, start=1)}}


def nbest_to_fst(hyps: list[tuple[str, float]], sym: dict[str, int]) -> kaldifst.StdVectorFst:
    """One acceptor whose paths are ``hyps`` (word string, am_score), as linear chains."""
    fst = kaldifst.StdVectorFst()
    start = fst.add_state()
    fst.start = start
    for text, score in hyps:
        words = text.split() or [EPS]
        prev = start
        for j, w in enumerate(words):
            nxt = fst.add_state()
            label = sym[w]
            cost = -float(score) if j == 0 else 0.0
            fst.add_arc(state=prev, arc=kaldifst.StdArc(label, label, cost, nxt))
            prev = nxt
        fst.set_final(state=prev, weight=0.0)
    return fst


def write_symbol_table(path: str | Path, sym: dict[str, int]) -> None:
    with atomic_write(path) as f:
        for w, i in sorted(sym.items(), key=lambda kv: kv[1]):
            f.write(f"{w} {i}\n")


def write_nbest_lattices(ark_path: str | Path, words_path: str | Path, nbest: Nbest) -> None:
    """Write every utterance's n-best as one FST into a Kaldi archive (temp file + rename),
    and the symbol table beside it; utterances in sorted id order."""
    sym = build_symbol_table(nbest)
    write_symbol_table(words_path, sym)
    with atomic_path(ark_path) as tmp:
        writer = kaldifst.VectorFstWriter(f"ark:{tmp}")
        for uid in sorted(nbest):
            writer.write(uid, nbest_to_fst(nbest[uid], sym))
        writer.close()


# ---------------------------------------------------------------------------------- reading


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
        log-sum-exp), sorted by am_score, highest first; ties in the order the paths' arcs
        appear in the FST.
    """
    start = fst.start
    if start < 0 or fst.num_states == 0:
        raise InputError(f"{where}: lattice has no start state")
    scores: dict[str, list[float]] = {}
    n_paths = 0
    # Iterative DFS; `on_path` detects cycles (a cyclic FST has infinitely many paths). Arcs are
    # pushed in reverse so they are popped, and their paths found, in the FST's arc order.
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
        for arc in reversed(list(kaldifst.ArcIterator(fst, state))):
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
        merged.append((text, logsumexp(vals)))
    merged.sort(key=lambda x: -x[1])
    return merged


def read_lattice_archive(ark_path: str | Path, words_path: str | Path) -> Nbest:
    """Read every utterance of a lattice archive (convention in the module docstring).

    Raises:
        InputError: a missing or corrupt archive, a duplicated utterance id, an empty archive,
            or any lattice or table error of :func:`fst_paths` / :func:`read_word_table`.
    """
    ark_path = Path(ark_path)
    if not ark_path.is_file():
        raise InputError(f"{ark_path}: lattice archive not found")
    words = read_word_table(words_path)
    out: Nbest = {}
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
