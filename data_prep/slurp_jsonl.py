"""Reading SLURP's annotation JSONL: ``[type : words]`` spans -> BIO per normalised word.

One JSON object per line (``dataset/slurp/{train,train_synthetic,devel,test}.jsonl`` of
pswietojanski/slurp), e.g.::

    {"slurp_id": 13804, "sentence": "wake me up at five am this week",
     "sentence_annotation": "wake me up at [time : five am] [date : this week]",
     "intent": "alarm_set", "scenario": "alarm", "action": "set", "tokens": [...],
     "entities": [...], "recordings": [{"file": "audio-1490359569-headset.flac", "wer": 0.0,
     "ent_wer": 0.0, "status": "correct"}, {"file": "audio-1490359569.flac", ...}]}

Rules (see also :mod:`data_prep.slurp`):

* **Text** is the ``sentence`` normalised with the SNIPS normaliser
  (:func:`data_prep.normalize.normalize_tokens`, whitespace token by token).
* **Slots** come from ``sentence_annotation``: the brackets are removed, every character of
  an entity's words carries that entity, and each whitespace token of the result takes the
  entity of its first labelled character, so an entity glued to outside text is one token
  (``[person : john]'s`` -> ``john's``, all ``person``; ``[time : 5]pm`` -> ``five p m``, all
  ``time``). The tokens are normalised and labelled with SNIPS's :func:`~data_prep.snips_tsv.to_bio`
  (a token that becomes several words gives B- then I-), each entity its own span, so two
  adjacent entities of one type stay two spans (``B-date B-date``). A token holding two
  entities (``[a : x][b : y]`` without a space) belongs to the first. ``entities`` (spans over
  ``tokens``) is not used: the annotation string is what SpeechBrain and ESPnet read too.
* The annotation without its brackets must normalise to the same words as ``sentence``;
  otherwise the row is unusable ("entity words do not match the sentence").
* **Nested entities** (``[a : x [b : y]]``) are not supported: such a row is unusable, as is
  an unbalanced bracket, an entity without ``type : words`` or with no words. (The published
  devel/test files show flat annotations only.)
* **Intent** is ``scenario_action`` (what SLURP's evaluation scores). The ``intent`` field
  must be ``scenario_action`` or, an upstream quirk seen in ``test.jsonl`` (``"intent":
  "hue_lightup"`` with scenario ``iot``), the action alone; anything else, or a scenario /
  action that is not a lower-case ``[a-z0-9_]`` name, makes the row unusable.
* A ``recordings`` entry must be an object whose ``file`` is a bare ``*.flac`` name.

A line that is not a JSON object (or not UTF-8) is an :class:`~common.io.InputError` naming
file and line; an unusable row is reported (file, line, slurp_id, reason) and skipped.

Usage:
    rows, report = read_slurp_jsonl(Path("slurp/dataset/slurp/devel.jsonl"))
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.io import read_jsonl
from data_prep.normalize import normalize_tokens
from data_prep.snips_tsv import to_bio

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ENTITY_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FLAC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.flac$")


@dataclass
class SlurpRow:
    """One usable SLURP sentence after normalisation."""

    slurp_id: int
    line: int
    sentence: str
    words: list[str]
    slots: list[str]  # BIO, one per word
    intent: str  # scenario_action
    scenario: str
    action: str
    recordings: list[dict[str, Any]]  # upstream entries (``file``, ``wer``, ...)


@dataclass
class SlurpReport:
    """What happened to the rows of one JSONL file."""

    path: str
    total: int = 0
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (line, slurp_id, reason)

    def log(self) -> None:
        logging.info(
            "%s: %d rows, %d usable, %d skipped",
            self.path,
            self.total,
            self.total - len(self.skipped),
            len(self.skipped),
        )
        for line, sid, reason in self.skipped:
            logging.warning("%s:%d: skipped slurp_id %s: %s", self.path, line, sid, reason)


def parse_annotation(annotation: str) -> tuple[list[str], list[str]]:
    """``sentence_annotation`` -> (whitespace tokens without brackets, one label per token).

    Labels are ``O`` or ``<k>/<type>`` with ``k`` the entity's index, the label form
    :func:`~data_prep.snips_tsv.to_bio` reads (a new ``k`` starts a new span).

    Raises:
        ValueError: an unbalanced or nested bracket, an entity that is not ``type : words``.
    """
    chars: list[str] = []
    owner: list[int | None] = []  # entity index of each character
    types: list[str] = []
    i = 0
    while i < len(annotation):
        c = annotation[i]
        if c == "]":
            raise ValueError(f"unbalanced ']' at column {i + 1} of the annotation")
        if c != "[":
            chars.append(c)
            owner.append(None)
            i += 1
            continue
        close = annotation.find("]", i + 1)
        inner_open = annotation.find("[", i + 1)
        if close < 0:
            raise ValueError(f"unbalanced '[' at column {i + 1} of the annotation")
        if 0 <= inner_open < close:
            raise ValueError(
                f"nested '[' at column {inner_open + 1} of the annotation (nested entities "
                "are not supported)"
            )
        inner = annotation[i + 1 : close]
        etype, sep, filler = inner.partition(":")
        etype, filler = etype.strip(), filler.strip()
        if not sep or not _ENTITY_TYPE_RE.match(etype):
            raise ValueError(f"malformed entity '[{inner}]' (expected '[type : words]')")
        if not filler:
            raise ValueError(f"entity '[{inner}]' has no words")
        k = len(types)
        types.append(etype)
        chars.extend(filler)
        owner.extend([k] * len(filler))
        i = close + 1
    tokens: list[str] = []
    labels: list[str] = []
    start = None
    for j in range(len(chars) + 1):
        if j < len(chars) and not chars[j].isspace():
            if start is None:
                start = j
            continue
        if start is not None:
            tokens.append("".join(chars[start:j]))
            k = next((o for o in owner[start:j] if o is not None), None)
            labels.append("O" if k is None else f"{k}/{types[k]}")
            start = None
    return tokens, labels


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"word {i + 1}: {x!r} in the annotation, {y!r} in the sentence"
    return f"{len(a)} words in the annotation, {len(b)} in the sentence"


def _name(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"malformed {key} {value!r} (expected a lower-case [a-z0-9_] name)")
    return value


def parse_slurp_row(obj: dict, line: int = 0, max_words: int = 0) -> SlurpRow:
    """Validate and normalise one SLURP object (see the module docstring for the rules).

    Args:
        obj: the parsed JSON object of one line.
        line: its line number (kept for error messages).
        max_words: reject a row with more words than this after normalisation (0: no limit).

    Raises:
        ValueError: the reason the row is unusable.
    """
    sid = obj.get("slurp_id")
    if isinstance(sid, str) and sid.isdigit():
        sid = int(sid)
    if not isinstance(sid, int) or isinstance(sid, bool):
        raise ValueError(f"missing or malformed slurp_id {sid!r}")
    sentence, annotation = obj.get("sentence"), obj.get("sentence_annotation")
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError("empty or missing sentence")
    if not isinstance(annotation, str):
        raise ValueError("missing sentence_annotation")
    scenario, action = _name(obj, "scenario"), _name(obj, "action")
    intent = f"{scenario}_{action}"
    if obj.get("intent") not in (intent, action):
        raise ValueError(
            f"intent {obj.get('intent')!r} is neither scenario_action {intent!r} nor the "
            f"action {action!r}"
        )
    recordings = obj.get("recordings", [])
    if not isinstance(recordings, list):
        raise ValueError("recordings is not a list")
    for r in recordings:
        f = r.get("file") if isinstance(r, dict) else None
        if not isinstance(f, str) or not _FLAC_RE.match(f):
            raise ValueError(f"malformed recordings entry {r!r} (expected a 'file': '<name>.flac')")

    tokens, labels = parse_annotation(annotation)
    token_words = normalize_tokens(tokens)
    words = [w for ws in token_words for w in ws]
    sentence_words = [w for ws in normalize_tokens(sentence.split()) for w in ws]
    if words != sentence_words:
        raise ValueError(
            "entity words do not match the sentence after normalisation ("
            + _first_difference(words, sentence_words)
            + ")"
        )
    if not words:
        raise ValueError("nothing left after text normalisation")
    if 0 < max_words < len(words):
        raise ValueError(
            f"{len(words)} words after normalisation, more than --max-words {max_words}"
        )
    return SlurpRow(
        slurp_id=sid,
        line=line,
        sentence=sentence,
        words=words,
        slots=to_bio(token_words, labels),
        intent=intent,
        scenario=scenario,
        action=action,
        recordings=recordings,
    )


def read_slurp_jsonl(path: Path, max_words: int = 0) -> tuple[list[SlurpRow], SlurpReport]:
    """Read one SLURP JSONL file; unusable rows are reported, not returned.

    A ``slurp_id`` seen earlier in the file makes the later row unusable.

    Raises:
        InputError: naming file and line: the file is missing, a line is not UTF-8, not JSON
            or not a JSON object.
    """
    report = SlurpReport(str(path))
    rows: list[SlurpRow] = []
    first_line: dict[int, int] = {}
    for lineno, obj in read_jsonl(path):
        report.total += 1
        sid = obj.get("slurp_id", "?")
        try:
            row = parse_slurp_row(obj, lineno, max_words)
            if row.slurp_id in first_line:
                raise ValueError(f"duplicate slurp_id (first on line {first_line[row.slurp_id]})")
        except ValueError as e:
            report.skipped.append((lineno, str(sid), str(e)))
            continue
        first_line[row.slurp_id] = lineno
        rows.append(row)
    return rows, report
