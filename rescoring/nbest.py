"""N-best lists: our JSONL records, an external TSV form, and the ASR stage's lattices.

Forms read by :func:`load_nbest` (chosen by the file name):

* ``*.jsonl`` / ``*.jsonl.gz`` - ours (docs/INTERFACES.md), one object per utterance:
  ``{"id", "ref", "hyps": [{"words", "tokens", "am_score"}, ...]}``, best first.
* ``*.tsv`` / ``*.txt`` - another recogniser's n-best, one hypothesis per line, as NeMo's
  rescorer reads them: ``utt_id<TAB>text<TAB>score`` (score = log-probability of the
  recogniser, higher is better; text may be empty). Lines of one utterance need not be
  adjacent; hypotheses are ordered by score. References come from ``--refs``.
* ``*.ark`` - lattices written by ``decode-asr`` (convention in :mod:`rescoring.lattice`);
  the symbol table is ``words-{set}.txt`` or ``words.txt`` beside it. References come from ``--refs``.

References (``--refs``): a Lhotse supervision manifest (``*.jsonl.gz``, its ``text``) or a
Kaldi-style text file ``utt_id word word ...``.

Usage:
    records = load_nbest("exp/asr/x/modified_beam_beam8/nbest-dev.jsonl.gz")
    records = load_nbest("other-asr-dev.tsv", refs="data/manifests/snips_nlu_dev.jsonl.gz")
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.io import InputError, open_text, read_jsonl, read_kaldi_text, write_jsonl


@dataclass
class Hyp:
    words: str
    am_score: float
    tokens: list[int] = field(default_factory=list)
    lm_score: float | None = None
    total: float | None = None


@dataclass
class NbestRecord:
    id: str
    ref: str
    hyps: list[Hyp]

    def to_json(self) -> dict:
        d = asdict(self)
        for h in d["hyps"]:
            for k in ("lm_score", "total"):
                if h[k] is None:
                    del h[k]
        return d


def _float(x, where: str, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field '{name}' is not a number: {x!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: field '{name}' is not finite: {x!r}")
    return v


def read_nbest_jsonl(path: str | Path) -> list[NbestRecord]:
    """Read our n-best JSONL; every malformed line is reported with file and line number."""
    records, seen = [], set()
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        for key in ("id", "ref", "hyps"):
            if key not in obj:
                raise InputError(f"{where}: missing field '{key}'")
        if obj["id"] in seen:
            raise InputError(f"{where}: duplicate utterance id {obj['id']!r}")
        seen.add(obj["id"])
        if not isinstance(obj["hyps"], list) or not obj["hyps"]:
            raise InputError(f"{where}: utterance {obj['id']!r} has an empty n-best list")
        hyps = []
        for i, h in enumerate(obj["hyps"]):
            if not isinstance(h, dict) or "words" not in h or "am_score" not in h:
                raise InputError(
                    f"{where}: hypothesis {i} of {obj['id']!r} needs 'words' and 'am_score'"
                )
            hyps.append(
                Hyp(
                    words=str(h["words"]),
                    am_score=_float(h["am_score"], where, "am_score"),
                    tokens=list(h.get("tokens", [])),
                    lm_score=h.get("lm_score"),
                    total=h.get("total"),
                )
            )
        records.append(NbestRecord(str(obj["id"]), str(obj["ref"]), hyps))
    if not records:
        raise InputError(f"{path}: no n-best records")
    return records


def read_refs(path: str | Path) -> dict[str, str]:
    """References from a Lhotse supervision manifest or a ``utt_id words...`` text file."""
    path = Path(path)
    if path.name.endswith(".jsonl.gz") or path.name.endswith(".jsonl"):
        refs = {}
        for lineno, obj in read_jsonl(path):
            if "id" not in obj or "text" not in obj:
                raise InputError(f"{path}:{lineno}: a supervision needs 'id' and 'text'")
            refs[obj["id"]] = obj["text"]
        return refs
    return read_kaldi_text(path)


def read_nbest_tsv(path: str | Path, refs: dict[str, str]) -> list[NbestRecord]:
    """Read the external ``utt_id<TAB>text<TAB>score`` form (see module docstring)."""
    by_utt: dict[str, list[Hyp]] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise InputError(
                    f"{path}:{lineno}: expected 'utt_id<TAB>text<TAB>score', got "
                    f"{len(parts)} fields"
                )
            uid, text, score = parts
            by_utt.setdefault(uid, []).append(
                Hyp(
                    words=" ".join(text.split()),
                    am_score=_float(score, f"{path}:{lineno}", "score"),
                )
            )
    return _attach_refs(by_utt, refs, path)


def _attach_refs(by_utt: dict[str, list[Hyp]], refs: dict[str, str], path) -> list[NbestRecord]:
    missing = [u for u in by_utt if u not in refs]
    if missing:
        raise InputError(f"{path}: no reference for utterance(s) {', '.join(missing[:5])}")
    if not by_utt:
        raise InputError(f"{path}: no hypotheses")
    return [
        NbestRecord(u, refs[u], sorted(h, key=lambda x: -x.am_score)) for u, h in by_utt.items()
    ]


def read_nbest_lattices(path: str | Path, refs: dict[str, str]) -> list[NbestRecord]:
    """Read a lattice archive (convention in :mod:`rescoring.lattice` and the README)."""
    from rescoring.lattice import read_lattice_archive

    path = Path(path)
    stem = path.name[len("lattices-") : -len(".ark")] if path.name.startswith("lattices-") else ""
    words = next(
        (
            p
            for p in (path.with_name(f"words-{stem}.txt"), path.with_name("words.txt"))
            if p.is_file()
        ),
        None,
    )
    if words is None:
        raise InputError(f"{path}: no symbol table words-{stem}.txt or words.txt beside it")
    nbest = read_lattice_archive(path, words)
    by_utt = {u: [Hyp(words=w, am_score=s) for w, s in hyps] for u, hyps in nbest.items()}
    return _attach_refs(by_utt, refs, path)


def load_nbest(path: str | Path, refs: str | Path | None = None) -> list[NbestRecord]:
    """Read any supported n-best form, chosen by the file name (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: n-best file not found")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        records = read_nbest_jsonl(path)
        if refs is not None:
            ref_map = read_refs(refs)
            for r in records:
                r.ref = ref_map.get(r.id, r.ref)
        return records
    if refs is None:
        raise InputError(f"{path}: this n-best form carries no references: pass --refs")
    ref_map = read_refs(refs)
    if path.suffix == ".ark":
        return read_nbest_lattices(path, ref_map)
    return read_nbest_tsv(path, ref_map)


def write_nbest(path: str | Path, records: list[NbestRecord]) -> None:
    write_jsonl(path, (r.to_json() for r in records))
