"""Text normalisation to spoken form, token by token, so that slot labels can follow the words.

Rules (applied to each whitespace token of the raw utterance):

* Non-ASCII letters are transliterated with ``unidecode`` (``Kōgen`` -> ``kogen``), then
  everything is lower-cased.
* Numbers are verbalised with ``num2words`` (American style: no "and"):
  cardinals (``1,000`` -> ``one thousand``), decimals (``3.5`` -> ``three point five``),
  ordinals (``21st`` -> ``twenty first``), years (a four-digit number from 1100 to 2099 ->
  ``nineteen seventy five``, 2000-2009 -> ``two thousand five``), decades (``90s``, ``90's``,
  ``1990s`` -> ``nineties``, ``nineteen nineties``), times (``5:30`` -> ``five thirty``,
  ``7:05`` -> ``seven oh five``, ``7:00`` -> ``seven o'clock``, ``5pm`` -> ``five p m``),
  US dates (``9/11/2035`` -> ``september eleventh twenty thirty five``), ``%`` -> ``percent``,
  ``$5`` -> ``five dollars``, ``&`` -> ``and``.
* Dotted abbreviations: month abbreviations (``Feb.`` -> ``february``), titles (``Mr.`` ->
  ``mister``, ``Dr.`` -> ``doctor``), letter sequences (``A.M.`` -> ``a m``).
* Hyphens, slashes and other punctuation separate words and are removed; apostrophes inside
  a word are kept (``o'clock``, ``i'd``), leading/trailing ones are dropped.
* Letters and digits glued together are split (``b52`` -> ``b fifty two``).

Usage:
    >>> normalize_text("Book a table for 3 at 7:30 pm on Feb. 21st")
    'book a table for three at seven thirty p m on february twenty first'
    >>> normalize_token("top-20")
    ['top', 'twenty']
"""

from __future__ import annotations

import re

from num2words import num2words
from unidecode import unidecode

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTH_ABBR = {m[:3]: m for m in MONTHS} | {"sept": "september"}
_TITLES = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "vs": "versus"}

_ORDINAL_RE = re.compile(r"^(\d+)(st|nd|rd|th)$")
_DECADE_RE = re.compile(r"^(\d{2}|\d{4})'?s$")
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(am|pm|a\.m\.|p\.m\.)?$")
_HOUR_AMPM_RE = re.compile(r"^(\d{1,2})(am|pm|a\.m\.|p\.m\.)$")
_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})$")
_NUMBER_RE = re.compile(r"^\d{1,3}(,\d{3})+$|^\d+$")
_DECIMAL_RE = re.compile(r"^\d*\.\d+$")
_DOTTED_LETTERS_RE = re.compile(r"^([a-z]\.){2,}$|^([a-z]\.)+[a-z]$")
_ALNUM_SPLIT_RE = re.compile(r"\d+|[a-z']+")


def _clean(words: str) -> list[str]:
    """Split num2words output into words, dropping hyphens, commas and the British 'and'."""
    return [w for w in re.split(r"[\s,\-]+", words) if w and w != "and"]


def cardinal(n: int) -> list[str]:
    return _clean(num2words(n))


def ordinal(n: int) -> list[str]:
    return _clean(num2words(n, to="ordinal"))


def year(n: int) -> list[str]:
    if 2000 <= n <= 2009:
        return cardinal(n)
    return _clean(num2words(n, to="year"))


def _plural(words: list[str]) -> list[str]:
    last = words[-1]
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return words[:-1] + [last]


def _number(s: str) -> list[str]:
    """A bare integer: a year if it looks like one, else a cardinal."""
    n = int(s.replace(",", ""))
    if "," not in s and len(s) == 4 and 1100 <= n <= 2099:
        return year(n)
    return cardinal(n)


def _time(hour: int, minute: int) -> list[str]:
    words = cardinal(hour)
    if minute == 0:
        return words + ["o'clock"]
    if minute < 10:
        return words + ["oh"] + cardinal(minute)
    return words + cardinal(minute)


def _ampm(s: str | None) -> list[str]:
    return [] if not s else [s[0], "m"]


def normalize_token(token: str) -> list[str]:
    """Normalise one whitespace token of a raw utterance to zero or more spoken-form words."""
    t = unidecode(token).lower().strip()
    if not t:
        return []
    # Strip sentence punctuation around the token, but keep a final '.' of abbreviations.
    core = t.strip("\"'()[]{}!?,;:")
    core_nodot = core.rstrip(".")
    if m := _TIME_RE.match(core):
        return _time(int(m.group(1)), int(m.group(2))) + _ampm(m.group(3))
    if m := _HOUR_AMPM_RE.match(core):
        return cardinal(int(m.group(1))) + _ampm(m.group(2))
    if m := _DATE_RE.match(core_nodot):
        month, day, yr = int(m.group(1)), int(m.group(2)), m.group(3)
        if 1 <= month <= 12 and 1 <= day <= 31:
            y = int(yr) if len(yr) == 4 else 2000 + int(yr)
            return [MONTHS[month - 1]] + ordinal(day) + year(y)
    if m := _ORDINAL_RE.match(core_nodot):
        return ordinal(int(m.group(1)))
    if m := _DECADE_RE.match(core_nodot):
        digits = m.group(1)
        if len(digits) == 2:
            n = int(digits)
            return ["two", "thousands"] if n == 0 else _plural(cardinal(n))
        return _plural(year(int(digits)))
    if _NUMBER_RE.match(core_nodot):
        return _number(core_nodot)
    if _DECIMAL_RE.match(core_nodot):
        return _clean(num2words(float(core_nodot)))
    if core.endswith(".") and core_nodot in _MONTH_ABBR:
        return [_MONTH_ABBR[core_nodot]]
    if core.endswith(".") and core_nodot in _TITLES:
        return [_TITLES[core_nodot]]
    if _DOTTED_LETTERS_RE.match(core):
        return [c for c in core if c != "."]
    if core.startswith("$") and _NUMBER_RE.match(core_nodot[1:]):
        return _number(core_nodot[1:]) + ["dollars"]
    if core.endswith("%") and _NUMBER_RE.match(core[:-1]):
        return _number(core[:-1]) + ["percent"]
    # General case: split on anything but letters, digits and apostrophes.
    t = t.replace("&", " and ").replace("%", " percent ").replace("+", " plus ")
    words: list[str] = []
    for piece in re.split(r"[^a-z0-9']+", t):
        for sub in _ALNUM_SPLIT_RE.findall(piece):
            if sub.isdigit():
                words.extend(_number(sub))
            else:
                sub = sub.strip("'")
                if sub:
                    words.append(sub)
    return words


def normalize_tokens(tokens: list[str]) -> list[list[str]]:
    """Normalise each token; returns one (possibly empty) word list per token.

    Two rules look at the previous token: a day number after a month name is an ordinal
    (``December 26`` -> ``december twenty sixth``), and ``am``/``pm`` after a number or time
    is spelled (``7 pm`` -> ``seven p m``; a lone ``am`` elsewhere is the verb).
    """
    out: list[list[str]] = []
    prev_raw = ""
    for tok in tokens:
        words = normalize_token(tok)
        core = unidecode(tok).lower().strip("\"'()[]{}!?,;:.")
        prev_words = out[-1] if out else []
        if core.isdigit() and 1 <= int(core) <= 31 and prev_words[-1:] and prev_words[-1] in MONTHS:
            words = ordinal(int(core))
        elif core in ("am", "pm") and re.search(r"\d$|o'clock$", prev_raw.rstrip(".,")):
            words = [core[0], "m"]
        out.append(words)
        prev_raw = unidecode(tok).lower()
    return out


def normalize_text(text: str) -> str:
    """Normalise a whole raw sentence to a single-spaced spoken-form word string."""
    return " ".join(w for ws in normalize_tokens(text.split()) for w in ws)
