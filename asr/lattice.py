"""N-best lists as OpenFst lattices (kaldifst backend; small so a k2 backend can be added).

Convention (also in asr/README.md): one archive per split, ``lattices-{split}.ark``, written with
``kaldifst.VectorFstWriter`` and keyed by utterance id, plus one ``words.txt`` symbol table
(``<eps> 0``, then words) in the same folder. Each FST is a tropical-semiring acceptor
(ilabel == olabel == word id) whose paths are exactly the n-best hypotheses: from start state 0,
hypothesis *i* is a linear chain of its words; its **first arc carries cost = -am_score**
(natural-log probability, negated), all other arcs cost 0; the last state of each chain is final
with weight 0. An empty hypothesis is a single epsilon arc carrying the cost. So the shortest
path is the 1-best and ``-(path cost)`` is the hypothesis' am_score.

Usage:
    write_nbest_lattices("lattices-dev.ark", "words.txt", {utt: [(words, am_score), ...]})
    nbest = read_nbest_lattices("lattices-dev.ark", "words.txt")  # same dict back
"""

from __future__ import annotations

from pathlib import Path

import kaldifst

from common.io import InputError, atomic_write

EPS = "<eps>"


def build_symbol_table(nbest: dict[str, list[tuple[str, float]]]) -> dict[str, int]:
    words = sorted({w for hyps in nbest.values() for text, _ in hyps for w in text.split()})
    return {EPS: 0, **{w: i for i, w in enumerate(words, start=1)}}


def nbest_to_fst(hyps: list[tuple[str, float]], sym: dict[str, int]) -> kaldifst.StdVectorFst:
    """One acceptor whose paths are ``hyps`` (word string, am_score)."""
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


def fst_to_nbest(fst: kaldifst.StdVectorFst, words: dict[int, str]) -> list[tuple[str, float]]:
    """Inverse of :func:`nbest_to_fst` (paths from the start state, in arc order)."""
    out = []
    for arc in kaldifst.ArcIterator(fst, fst.start):
        cost, seq, state = float(arc.weight.value), [], arc.nextstate
        if arc.olabel:
            seq.append(words[arc.olabel])
        while True:
            arcs = list(kaldifst.ArcIterator(fst, state))
            if not arcs:
                break
            a = arcs[0]
            cost += float(a.weight.value)
            if a.olabel:
                seq.append(words[a.olabel])
            state = a.nextstate
        out.append((" ".join(seq), -cost))
    return out


def write_symbol_table(path: str | Path, sym: dict[str, int]) -> None:
    with atomic_write(path) as f:
        for w, i in sorted(sym.items(), key=lambda kv: kv[1]):
            f.write(f"{w} {i}\n")


def read_symbol_table(path: str | Path) -> dict[int, str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: symbol table not found")
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}:{lineno}: expected 'word id'")
        out[int(parts[1])] = parts[0]
    return out


def write_nbest_lattices(
    ark_path: str | Path, words_path: str | Path, nbest: dict[str, list[tuple[str, float]]]
) -> None:
    """Write every utterance's n-best as one FST into a Kaldi archive (temp file + rename)."""
    ark_path = Path(ark_path)
    sym = build_symbol_table(nbest)
    write_symbol_table(words_path, sym)
    tmp = ark_path.with_name(f".{ark_path.name}.tmp")
    writer = kaldifst.VectorFstWriter(f"ark:{tmp}")
    for uid in sorted(nbest):
        writer.write(uid, nbest_to_fst(nbest[uid], sym))
    writer.close()
    tmp.replace(ark_path)


def read_nbest_lattices(
    ark_path: str | Path, words_path: str | Path
) -> dict[str, list[tuple[str, float]]]:
    words = read_symbol_table(words_path)
    if not Path(ark_path).is_file():
        raise InputError(f"{ark_path}: lattice archive not found")
    out = {}
    reader = kaldifst.SequentialVectorFstReader(f"ark:{ark_path}")
    while not reader.done:
        out[reader.key] = fst_to_nbest(reader.value, words)
        reader.next()
    return out
