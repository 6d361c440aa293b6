"""Phrase lists (lexicons) for contextual biasing: one reader for every package.

Format: one phrase per line, ``phrase<TAB>count`` or just ``phrase`` (count 1); UTF-8, ``.gz``
allowed. ``extract-slot-lexicon`` writes them from NLU training labels; ``decode-asr
--context-lexicon`` reads them to build its context graph.

Usage:
    for phrase, count in read_lexicon("data/lang/lexicons/slot-city.txt"): ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from common.io import InputError, open_text

#: Default limit on the phrases of one lexicon (a context graph of more is a mistake).
MAX_LEXICON_PHRASES = 100_000
_COUNT_RE = re.compile(r"^\s*[0-9]+\s*$")


@dataclass(frozen=True)
class LexiconEntry:
    """One phrase of a lexicon, with its count and the line it was read from."""

    phrase: str
    count: int
    lineno: int


def read_lexicon(
    path: str | Path, max_phrases: int | None = MAX_LEXICON_PHRASES
) -> list[tuple[str, int]]:
    """``(phrase, count)`` of a phrase list, in file order (see :func:`read_lexicon_entries`)."""
    return [(e.phrase, e.count) for e in read_lexicon_entries(path, max_phrases)]


def read_lexicon_entries(
    path: str | Path, max_phrases: int | None = MAX_LEXICON_PHRASES
) -> list[LexiconEntry]:
    """Read a phrase list: ``phrase<TAB>count`` or just ``phrase`` (count 1) per line.

    Runs of white space inside a phrase are read as one space (the phrase is a word sequence).
    ``.gz`` files are decompressed. An empty file is an empty list.

    Args:
        path: the lexicon file.
        max_phrases: more phrases than this is an error (``None``: no limit).

    Returns:
        The entries in file order (phrase, count, line number).

    Raises:
        InputError: naming file:line for an empty line, an empty phrase, a count that is not
            a positive integer, a line with more than one TAB, a phrase listed twice or more
            than ``max_phrases`` phrases; a missing file or non-UTF-8 text.
    """
    path = Path(path)
    out: list[LexiconEntry] = []
    first_line: dict[str, int] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            line = line.rstrip("\n")
            if not line.strip():
                raise InputError(f"{where}: empty line (one phrase per line, no blank lines)")
            fields = line.split("\t")
            if len(fields) > 2:
                raise InputError(
                    f"{where}: {len(fields) - 1} TABs; expected 'phrase<TAB>count' or 'phrase'"
                )
            phrase = " ".join(fields[0].split())
            if not phrase:
                raise InputError(f"{where}: empty phrase")
            count = 1
            if len(fields) == 2:
                if not _COUNT_RE.match(fields[1]) or int(fields[1]) < 1:
                    raise InputError(
                        f"{where}: count {fields[1]!r} of {phrase!r} is not a positive integer"
                    )
                count = int(fields[1])
            if phrase in first_line:
                raise InputError(
                    f"{where}: duplicate phrase {phrase!r} (first on line {first_line[phrase]})"
                )
            if max_phrases is not None and len(out) >= max_phrases:
                raise InputError(
                    f"{where}: more than {max_phrases} phrases (the limit of a lexicon); "
                    "shorten the list (extract-slot-lexicon --max-phrases) or raise the limit "
                    "(decode-asr --context-max-phrases)"
                )
            first_line[phrase] = lineno
            out.append(LexiconEntry(phrase, count, lineno))
    return out


def read_context_map(
    path: str | Path, lists: Iterable[str], utt_ids: Iterable[str] | None
) -> dict[str, tuple[str, ...]]:
    """Per-utterance lists: ``utt_id<TAB>list[,list...]`` per line (an empty list field: this
    utterance is not biased).

    Raises:
        InputError: naming file:line for an empty line, a line without exactly one TAB, an
            utterance id not among ``utt_ids`` (the cuts being decoded), an utterance listed
            twice, or a list name that is not among ``lists``. ``utt_ids`` None: any
            utterance id is accepted.
    """
    path = Path(path)
    known_lists = set(lists)
    known_utts = None if utt_ids is None else set(utt_ids)
    out: dict[str, tuple[str, ...]] = {}
    first: dict[str, int] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            line = line.rstrip("\n")
            if not line.strip():
                raise InputError(f"{where}: empty line (expected 'utt_id<TAB>list[,list...]')")
            fields = line.split("\t")
            if len(fields) != 2:
                raise InputError(
                    f"{where}: {len(fields) - 1} TABs; expected 'utt_id<TAB>list[,list...]'"
                )
            uid = fields[0].strip()
            if known_utts is not None and uid not in known_utts:
                raise InputError(f"{where}: utterance {uid!r} is not in the cuts being decoded")
            if uid in first:
                raise InputError(
                    f"{where}: utterance {uid!r} listed twice (first on line {first[uid]})"
                )
            names = tuple(n.strip() for n in fields[1].split(",") if n.strip())
            for name in names:
                if name not in known_lists:
                    shown = sorted(known_lists)
                    more = f" ... ({len(shown)} lists)" if len(shown) > 10 else ""
                    raise InputError(
                        f"{where}: unknown list {name!r} for utterance {uid!r}; "
                        f"lists: {shown[:10]}{more}"
                    )
            first[uid] = lineno
            out[uid] = names
    return out
