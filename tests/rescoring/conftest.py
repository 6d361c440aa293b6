"""Tiny rescoring inputs built per test: n-best lists, gold manifests, LM text, word counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# id, ref, intent, slots, [(words, am_score), ...]  (best first-pass hypothesis first)
TINY = {
    "dev": [
        (
            "d1",
            "play hey jude",
            "PlayMusic",
            ["O", "B-track", "I-track"],
            [("play hey dude", -1.0), ("play hey jude", -1.4)],
        ),
        (
            "d2",
            "book a table in boston",
            "BookRestaurant",
            ["O", "O", "O", "O", "B-city"],
            [("book a table in austin", -2.0), ("book a table in boston", -2.3)],
        ),
    ],
    "test": [
        (
            "t1",
            "play hey jude now",
            "PlayMusic",
            ["O", "B-track", "I-track", "O"],
            [("play hey dude now", -1.1), ("play hey jude now", -1.3)],
        ),
        (
            "t2",
            "weather in boston",
            "GetWeather",
            ["O", "O", "B-city"],
            [("weather in austin", -1.0), ("weather in boston", -1.2)],
        ),
    ],
}
LM_TEXT = "play hey jude\nbook a table in boston\nweather in boston today\nplay hey jude now\n"


def write_lines(path: Path, objs) -> Path:
    """JSON lines (objects) or raw strings, one per line."""
    path.write_text(
        "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs),
        encoding="utf-8",
    )
    return path


def nbest_record(uid: str, ref: str, hyps) -> dict:
    return {
        "id": uid,
        "ref": ref,
        "hyps": [{"words": w, "tokens": [1, 2], "am_score": a} for w, a in hyps],
    }


def gold_record(uid: str, text: str, intent, slots) -> dict:
    custom = {}
    if intent is not None:
        custom["intent"] = intent
    if slots is not None:
        custom["slots"] = slots
    return {
        "id": uid,
        "recording_id": uid,
        "start": 0.0,
        "duration": 1.0,
        "text": text,
        "custom": custom,
    }


def build_tiny(d: Path) -> Path:
    """``nbest-{dev,test}.jsonl``, ``gold-{dev,test}.jsonl``, ``lm.txt``, ``counts.txt`` in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    for s, rows in TINY.items():
        write_lines(d / f"nbest-{s}.jsonl", [nbest_record(u, r, h) for u, r, _, _, h in rows])
        write_lines(d / f"gold-{s}.jsonl", [gold_record(u, r, i, sl) for u, r, i, sl, _ in rows])
    (d / "lm.txt").write_text(LM_TEXT)
    (d / "counts.txt").write_text("play 9\nhey 9\nbook 9\na 9\ntable 9\nin 9\n")
    return d


@pytest.fixture()
def tiny(tmp_path) -> Path:
    """A folder with the tiny inputs of :func:`build_tiny`."""
    return build_tiny(tmp_path)


def bigram(d: Path) -> list[str]:
    return ["--scorer", "bigram", "--lm-checkpoint", str(d / "lm.txt")]
