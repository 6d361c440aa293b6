"""Typed checks of the fields of records read from users' files (n-best, 1-best, gold, params).

Every check validates the type, never coerces (``null`` is not the string ``"None"``, a list is not
a sentence, ``true`` is not a number), and raises :class:`common.io.InputError` as
``file:line (utt id): field 'X' must be ...``.

Usage:
    where = at(path, lineno, obj.get("id"))
    words = get_str(h, "words", where, name="hyps[0].words")
    score = get_number(h, "am_score", where, name="hyps[0].am_score")
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from common.io import InputError

_MISSING = object()


def shown(value: Any) -> str:
    """A short JSON rendering of a bad value for an error message."""
    try:
        s = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


def at(path: str | Path, lineno: int | None = None, uid: Any = None) -> str:
    """``file:line (utt id)`` (parts that are unknown are left out)."""
    where = f"{path}:{lineno}" if lineno is not None else str(path)
    if isinstance(uid, str) and uid:
        where += f" ({uid})"
    return where


def _get(obj: dict, key: str, where: str, name: str | None, required: bool) -> Any:
    v = obj.get(key, _MISSING)
    if v is _MISSING and required:
        raise InputError(f"{where}: missing field '{name or key}'")
    return v


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_number(value: Any, where: str, name: str) -> float:
    """A finite JSON number (not a bool, not a string) as a float."""
    if not is_number(value):
        raise InputError(f"{where}: field '{name}' must be a number, got {shown(value)}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        raise InputError(f"{where}: field '{name}' must be a finite number, got {shown(value)}")
    return v


def get_number(
    obj: dict, key: str, where: str, name: str | None = None, required: bool = True
) -> float | None:
    v = _get(obj, key, where, name, required)
    return None if v is _MISSING else check_number(v, where, name or key)


def get_int(
    obj: dict, key: str, where: str, name: str | None = None, minimum: int | None = None
) -> int:
    v = _get(obj, key, where, name, True)
    if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
        what = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise InputError(f"{where}: field '{name or key}' must be {what}, got {shown(v)}")
    return v


def get_str(
    obj: dict,
    key: str,
    where: str,
    name: str | None = None,
    required: bool = True,
    nonempty: bool = False,
    nullable: bool = False,
) -> str | None:
    """A string field; ``None`` when absent (``required=False``) or null (``nullable=True``)."""
    v = _get(obj, key, where, name, required)
    if v is _MISSING or (v is None and nullable):
        return None
    if not isinstance(v, str) or (nonempty and not v.strip()):
        what = "a non-empty string" if nonempty else "a string"
        raise InputError(f"{where}: field '{name or key}' must be {what}, got {shown(v)}")
    return v


def get_list(
    obj: dict,
    key: str,
    where: str,
    item: type,
    name: str | None = None,
    required: bool = True,
    nullable: bool = False,
) -> list | None:
    """A list whose items are all of type ``item`` (``int`` excludes bools)."""
    v = _get(obj, key, where, name, required)
    if v is _MISSING or (v is None and nullable):
        return None
    ok = isinstance(v, list) and all(
        isinstance(x, item) and not (item is int and isinstance(x, bool)) for x in v
    )
    if not ok:
        what = {int: "integers", str: "strings", dict: "objects"}.get(item, item.__name__)
        raise InputError(f"{where}: field '{name or key}' must be a list of {what}, got {shown(v)}")
    return v


def first_seen(first: dict[str, int], uid: str, path: str | Path, lineno: int) -> None:
    """Record that utterance ``uid`` is on line ``lineno`` of ``path``; a second line with the
    same id is an :class:`InputError` naming both lines."""
    if uid in first:
        raise InputError(
            f"{path}:{lineno}: duplicate utterance id {uid!r} (first at line {first[uid]})"
        )
    first[uid] = lineno
