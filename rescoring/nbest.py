"""N-best lists: our JSONL records, an external TSV form, and the ASR stage's lattices.

Forms read by :func:`load_nbest` (chosen by the file name):

* ``*.jsonl`` / ``*.jsonl.gz`` - ours (docs/INTERFACES.md), one object per utterance:
  ``{"id", "ref", "hyps": [{"words", "tokens", "am_score"}, ...]}``, best first.
* ``*.tsv`` / ``*.txt`` - another recogniser's n-best, one hypothesis per line, as NeMo's
  rescorer reads them: ``utt_id<TAB>text<TAB>score`` (score = log-probability of the
  recogniser, higher is better; text may be empty). Lines of one utterance need not be
  adjacent; hypotheses are ordered by score. References come from ``--refs``.
* ``*.ark`` - lattices written by ``decode-asr`` (convention in :mod:`common.lattice`);
  the symbol table is ``words-{set}.txt`` or ``words.txt`` beside it. References come from ``--refs``.

References (``--refs``): a Lhotse supervision manifest (``*.jsonl.gz``, its ``text``) or a
Kaldi-style text file ``utt_id word word ...``.

Every field is validated at the boundary, by type, never coerced: ``id`` a non-empty string,
``ref`` a string, ``hyps`` a non-empty list of objects, ``words`` a string, ``tokens`` (optional)
a list of integers, ``am_score`` and the optional ``lm_score`` / ``total`` / ``context_score`` /
``length_score`` / ``fusion_score`` finite numbers (a bool
is not a number). A bad record is an :class:`~common.io.InputError` naming
``file:line (utt id)`` and the field; a duplicated id names both lines; text that is not UTF-8
(UTF-16, Latin-1) names the line. An utterance with more than ``max_hyps`` hypotheses
(``--max-hyps``, default 1000) is an error naming it.

Usage:
    records = load_nbest("exp/asr/x/modified_beam_beam8/nbest-dev.jsonl.gz")
    records = load_nbest("other-asr-dev.tsv", refs="data/manifests/nlu_dev.jsonl.gz")
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.io import InputError, open_text, read_jsonl, write_jsonl
from common.lattice import first_pass_score, read_lattice_archive
from rescoring.fields import at, first_seen, get_list, get_number, get_str, shown

#: Most hypotheses one utterance may have (``--max-hyps``); more means this is not an n-best list.
DEFAULT_MAX_HYPS = 1000


@dataclass
class Hyp:
    words: str
    am_score: float
    tokens: list[int] = field(default_factory=list)
    lm_score: float | None = None
    total: float | None = None
    #: bonus of a contextually biased first pass (``decode-asr --context-score``)
    context_score: float | None = None
    #: length bonus of the first pass (``decode-asr --length-bonus``: bonus x BPE tokens)
    length_score: float | None = None
    #: LM shallow-fusion score of the first pass (``decode-asr --fusion-lm``)
    fusion_score: float | None = None

    @property
    def first_pass_score(self) -> float:
        """The score the first pass ranked by: ``am_score`` plus its biasing and length
        bonuses and its fusion score, if any."""
        return first_pass_score(
            self.am_score, self.length_score, self.context_score, self.fusion_score
        )


@dataclass
class NbestRecord:
    id: str
    ref: str
    hyps: list[Hyp]

    def to_json(self) -> dict:
        d = asdict(self)
        for h in d["hyps"]:
            for k in ("lm_score", "total", "context_score", "length_score", "fusion_score"):
                if h[k] is None:
                    del h[k]
        return d


def _float(text: str, where: str, name: str) -> float:
    """A finite number written as text (the TSV score column)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field '{name}' must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: field '{name}' must be a finite number, got {text!r}")
    return v


def _too_many(where: str, n: int, max_hyps: int) -> InputError:
    return InputError(
        f"{where}: {n} hypotheses for one utterance, more than --max-hyps {max_hyps} "
        "(not an n-best list? raise --max-hyps if it is)"
    )


def parse_hyp(h: object, where: str, i: int) -> Hyp:
    """One hypothesis object of our JSONL form, type-checked (see :mod:`rescoring.fields`)."""
    if not isinstance(h, dict):
        raise InputError(f"{where}: field 'hyps[{i}]' must be an object, got {shown(h)}")
    name = f"hyps[{i}]."
    tokens = get_list(h, "tokens", where, int, name + "tokens", required=False)
    return Hyp(
        words=get_str(h, "words", where, name + "words"),
        am_score=get_number(h, "am_score", where, name + "am_score"),
        tokens=list(tokens) if tokens is not None else [],
        lm_score=get_number(h, "lm_score", where, name + "lm_score", required=False),
        total=get_number(h, "total", where, name + "total", required=False),
        context_score=get_number(h, "context_score", where, name + "context_score", required=False),
        length_score=get_number(h, "length_score", where, name + "length_score", required=False),
        fusion_score=get_number(h, "fusion_score", where, name + "fusion_score", required=False),
    )


def read_nbest_jsonl(path: str | Path, max_hyps: int = DEFAULT_MAX_HYPS) -> list[NbestRecord]:
    """Read our n-best JSONL, validating every field's type (never coercing).

    Raises:
        InputError: ``file:line (utt id): field X must be ...`` for a missing or mistyped field,
            a duplicated id (naming both lines), an empty list or more than ``max_hyps``
            hypotheses.
    """
    records, seen = [], {}
    for lineno, obj in read_jsonl(path):
        uid = obj.get("id")
        where = at(path, lineno, uid)
        uid = get_str(obj, "id", where, nonempty=True)
        first_seen(seen, uid, path, lineno)
        ref = get_str(obj, "ref", where)
        hyps = obj.get("hyps")
        if "hyps" not in obj:
            raise InputError(f"{where}: missing field 'hyps'")
        if not isinstance(hyps, list) or not hyps:
            raise InputError(
                f"{where}: field 'hyps' must be a non-empty list of hypotheses, got {shown(hyps)}"
            )
        if len(hyps) > max_hyps:
            raise _too_many(where, len(hyps), max_hyps)
        records.append(NbestRecord(uid, ref, [parse_hyp(h, where, i) for i, h in enumerate(hyps)]))
    if not records:
        raise InputError(f"{path}: no n-best records")
    return records


def read_id_text(path: str | Path) -> dict[str, str]:
    """A Kaldi ``text``-style file (``utt_id word word ...``); a duplicated id is an error."""
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if "\x00" in line:
                raise InputError(_nul_message(path, lineno))
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            uid = parts[0]
            first_seen(first, uid, path, lineno)
            out[uid] = " ".join(parts[1].split()) if len(parts) > 1 else ""
    return out


def read_refs(path: str | Path) -> dict[str, str]:
    """References from a Lhotse supervision manifest or a ``utt_id words...`` text file."""
    path = Path(path)
    if path.name.endswith((".jsonl.gz", ".jsonl")):
        refs: dict[str, str] = {}
        first: dict[str, int] = {}
        for lineno, obj in read_jsonl(path):
            where = at(path, lineno, obj.get("id"))
            uid = get_str(obj, "id", where, nonempty=True)
            first_seen(first, uid, path, lineno)
            refs[uid] = get_str(obj, "text", where)
        return refs
    return read_id_text(path)


def _nul_message(path, lineno: int) -> str:
    return (
        f"{path}:{lineno}: NUL characters in a text line: the file is UTF-16 or binary; "
        "convert it to UTF-8"
    )


def read_nbest_tsv(
    path: str | Path, refs: dict[str, str], max_hyps: int = DEFAULT_MAX_HYPS
) -> list[NbestRecord]:
    """Read the external ``utt_id<TAB>text<TAB>score`` form (see module docstring).

    Raises:
        InputError: naming file and line for a line that is not UTF-8 (UTF-16, Latin-1...), a
            wrong number of columns, an empty id, a score that is not a finite number, or more
            than ``max_hyps`` hypotheses for one utterance.
    """
    by_utt: dict[str, list[Hyp]] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if "\x00" in line:
                raise InputError(_nul_message(path, lineno))
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 3:
                raise InputError(
                    f"{path}:{lineno}: expected 'utt_id<TAB>text<TAB>score', got "
                    f"{len(parts)} fields"
                )
            uid, text, score = parts
            if not uid.strip():
                raise InputError(f"{path}:{lineno}: empty utterance id")
            where = at(path, lineno, uid)
            hyps = by_utt.setdefault(uid, [])
            if len(hyps) >= max_hyps:
                raise _too_many(where, len(hyps) + 1, max_hyps)
            hyps.append(Hyp(words=" ".join(text.split()), am_score=_float(score, where, "score")))
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


def read_nbest_lattices(
    path: str | Path, refs: dict[str, str], max_hyps: int = DEFAULT_MAX_HYPS
) -> list[NbestRecord]:
    """Read a lattice archive (convention in :mod:`common.lattice` and the README)."""
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
    for u, hyps in nbest.items():
        if len(hyps) > max_hyps:
            raise _too_many(f"{path}[{u}]", len(hyps), max_hyps)
    by_utt = {u: [Hyp(words=w, am_score=s) for w, s in hyps] for u, hyps in nbest.items()}
    return _attach_refs(by_utt, refs, path)


def load_nbest(
    path: str | Path, refs: str | Path | None = None, max_hyps: int = DEFAULT_MAX_HYPS
) -> list[NbestRecord]:
    """Read any supported n-best form, chosen by the file name (module docstring).

    Args:
        path: the n-best file.
        refs: references (needed for the TSV and lattice forms; for ours they replace ``ref``).
        max_hyps: most hypotheses allowed for one utterance (more is an error).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: n-best file not found")
    if max_hyps < 1:
        raise InputError(f"--max-hyps must be >= 1, got {max_hyps}")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        records = read_nbest_jsonl(path, max_hyps)
        if refs is not None:
            ref_map = read_refs(refs)
            for r in records:
                r.ref = ref_map.get(r.id, r.ref)
        return records
    if refs is None:
        raise InputError(f"{path}: this n-best form carries no references: pass --refs")
    ref_map = read_refs(refs)
    if path.suffix == ".ark":
        return read_nbest_lattices(path, ref_map, max_hyps)
    return read_nbest_tsv(path, ref_map, max_hyps)


def write_nbest(path: str | Path, records: list[NbestRecord]) -> None:
    write_jsonl(path, (r.to_json() for r in records))
