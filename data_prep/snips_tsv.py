"""Reading the SNIPS annotation TSVs: span labels -> BIO per normalised word, bad rows reported.

The files (``u_id, utterance, slot-labels, intent``; labels ``O`` or ``Intent/slot`` per
whitespace token, consecutive equal labels forming one span) must be UTF-8; an undecodable
byte, a UTF-16 file or a malformed line is an :class:`~common.io.InputError` naming the file
and line. Rows that cannot be used are reported (file, line, id, reason) and skipped, or fail
with ``strict``. See :mod:`data_prep.snips` for the repair rule and the whole preparation.

Usage:
    rows, report = read_snips_tsv(Path("download/snips/train.tsv"), strict=False)
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.io import InputError
from data_prep.normalize import normalize_tokens

SNIPS_INTENTS = (
    "AddToPlaylist",
    "BookRestaurant",
    "GetWeather",
    "PlayMusic",
    "RateBook",
    "SearchCreativeWork",
    "SearchScreeningEvent",
)
# our split name -> upstream file name
SPLITS = {"train": "train", "dev": "valid", "test": "test"}
_LABEL_RE = re.compile(r"^O$|^[A-Za-z]+/[A-Za-z_]+$")


@dataclass
class NluRow:
    """One usable SNIPS row after normalisation."""

    id: str
    raw: str
    words: list[str]
    slots: list[str]  # BIO, one per word
    intent: str


@dataclass
class SplitReport:
    """What happened to the rows of one TSV file."""

    path: str
    total: int = 0
    repaired: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (line, id, reason)

    def log(self) -> None:
        logging.info(
            "%s: %d rows, %d usable, %d repaired (empty tokens dropped), %d skipped",
            self.path,
            self.total,
            self.total - len(self.skipped),
            len(self.repaired),
            len(self.skipped),
        )
        for line, uid, reason in self.skipped:
            logging.warning("%s:%d: skipped %s: %s", self.path, line, uid, reason)


def to_bio(token_words: list[list[str]], labels: list[str]) -> list[str]:
    """Span labels per token -> BIO tags per word.

    Args:
        token_words: the normalised words of each token (possibly empty lists).
        labels: one ``O`` / ``Intent/slot`` label per token; runs of equal labels are a span.

    Returns:
        One tag per word: ``B-slot`` on the first word of a span, ``I-slot`` on the others.
    """
    assert len(token_words) == len(labels)
    tags: list[str] = []
    prev_label = "O"
    span_started = False
    for words, label in zip(token_words, labels, strict=True):
        if label != prev_label:
            span_started = False
        prev_label = label
        slot = label.split("/", 1)[1] if label != "O" else None
        for w in words:
            del w
            if slot is None:
                tags.append("O")
            else:
                tags.append(f"{'I' if span_started else 'B'}-{slot}")
                span_started = True
    return tags


def parse_row(
    row: list[str], known_intents: frozenset[str], max_words: int = 0
) -> tuple[NluRow, bool]:
    """Validate and normalise one TSV row.

    Args:
        row: the tab-separated fields.
        known_intents: accepted intent labels.
        max_words: reject a row with more words than this after normalisation (0: no limit).

    Returns:
        ``(row, repaired)``.

    Raises:
        ValueError: the reason the row is unusable.
    """
    if len(row) != 4:
        raise ValueError(f"expected 4 tab-separated fields, got {len(row)}")
    uid, utterance, label_str, intent = (x.strip("\r\n") for x in row)
    if not uid:
        raise ValueError("empty utterance id")
    if not utterance.strip():
        raise ValueError("empty utterance")
    if intent not in known_intents:
        raise ValueError(f"unknown intent {intent!r} (known: {', '.join(sorted(known_intents))})")
    tokens, labels = utterance.split(" "), label_str.split(" ")
    repaired = False
    if len(tokens) == len(labels) and "" in tokens:
        kept = [(t, lab) for t, lab in zip(tokens, labels, strict=True) if t != ""]
        tokens, labels = [t for t, _ in kept], [lab for _, lab in kept]
        repaired = True
    if len(tokens) != len(labels):
        raise ValueError(f"{len(tokens)} tokens but {len(labels)} slot labels")
    for lab in labels:
        if not _LABEL_RE.match(lab):
            raise ValueError(f"malformed slot label {lab!r}")
    token_words = normalize_tokens(tokens)
    words = [w for ws in token_words for w in ws]
    if not words:
        raise ValueError("nothing left after text normalisation")
    if 0 < max_words < len(words):
        raise ValueError(
            f"{len(words)} words after normalisation, more than --max-words {max_words}"
        )
    return NluRow(uid, utterance, words, to_bio(token_words, labels), intent), repaired


_HEADER = ["u_id", "utterance", "slot-labels", "intent"]


def _decode_tsv(path: Path) -> str:
    """The text of a UTF-8 TSV file; any other encoding is an error naming file and line."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(
            f"{path}:1: UTF-16 text (byte-order mark); convert the file to UTF-8 "
            "(e.g. iconv -f UTF-16 -t UTF-8)"
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(
            f"{path}:{_line_of(data, nul)}: NUL byte: not UTF-8 text (a UTF-16 or binary "
            "file?); convert the file to UTF-8"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise InputError(
            f"{path}:{_line_of(data, e.start)}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
            f"column {column}); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _tsv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each line; a csv.Error names file and line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"{path}:{reader.line_num}: malformed TSV line ({e})") from None
        yield reader.line_num, fields


def read_snips_tsv(
    path: Path, known_intents=frozenset(SNIPS_INTENTS), max_words: int = 0
) -> tuple[list[NluRow], SplitReport]:
    """Read one SNIPS annotation file; unusable rows are reported, not returned.

    Args:
        path: a UTF-8 TSV file with the header ``u_id utterance slot-labels intent``.
        known_intents: accepted intent labels.
        max_words: rows with more words after normalisation are skipped (0: no limit).

    Raises:
        InputError: naming file and line: an empty file, a missing or wrong header, text that
            is not UTF-8 (UTF-16, Latin-1, binary), a line the TSV reader rejects.
    """
    report = SplitReport(str(path))
    rows: list[NluRow] = []
    seen: set[str] = set()
    lines = _tsv_rows(path, _decode_tsv(path))
    first = next(lines, None)
    expected = "'" + "<TAB>".join(_HEADER) + "'"
    if first is None:
        raise InputError(f"{path}:1: empty file (expected a SNIPS header {expected})")
    header = [h.strip() for h in first[1][:4]]
    if header != _HEADER:
        got = (
            "a data row: the header line is missing"
            if len(first[1]) == 4 and first[1][3].strip() in known_intents
            else f"{first[1]!r}"
        )
        raise InputError(
            f"{path}:1: not a SNIPS annotation file (expected header {expected}, got {got})"
        )
    for lineno, raw in lines:
        if not any(x.strip() for x in raw):
            continue
        report.total += 1
        uid = raw[0] if raw else "?"
        try:
            if uid in seen:
                raise ValueError("duplicate utterance id")
            row, repaired = parse_row(raw, known_intents, max_words)
        except ValueError as e:
            report.skipped.append((lineno, uid, str(e)))
            continue
        seen.add(uid)
        if repaired:
            report.repaired.append(uid)
        rows.append(row)
    return rows, report


def find_split_file(corpus_dir: Path, name: str) -> Path | None:
    for cand in (corpus_dir / name, corpus_dir / f"{name}.tsv"):
        if cand.is_file():
            return cand
    return None
