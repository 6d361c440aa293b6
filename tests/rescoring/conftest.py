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


# A tiny recipe for the end-to-end tests: three dev and two test utterances.
RECIPE_SETS = {
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
        (
            "d3",
            "rate this book",
            "RateBook",
            ["O", "O", "B-object_type"],
            [("rate this book", -0.5), ("rate this look", -1.5)],
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
            [("weather in austin", -1.0), ("weather in boston", -1.2), ("whether in boston", -3.0)],
        ),
    ],
}
MT_TRAIN = [
    ("play hey jude", "PlayMusic", ["O", "B-track", "I-track"]),
    ("play yesterday by the beatles", "PlayMusic", ["O", "B-track", "O", "B-artist", "I-artist"]),
    ("book a table in boston", "BookRestaurant", ["O", "O", "O", "O", "B-city"]),
    ("weather in boston today", "GetWeather", ["O", "O", "B-city", "B-timeRange"]),
    ("rate this book", "RateBook", ["O", "O", "B-object_type"]),
    ("play hey jude now", "PlayMusic", ["O", "B-track", "I-track", "O"]),
]
RECIPE_LM_TEXT = (
    "play hey jude\nbook a table in boston\nweather in boston today\nrate this book\n"
    "play hey jude now\n"
)


@pytest.fixture()
def recipe(tmp_path) -> Path:
    """A tiny recipe: ``nbest-{dev,test}.jsonl``, ``nlu_{dev,test}.jsonl.gz`` (Lhotse), ``lm.txt``,
    ``mt.jsonl`` (a stand-in multitask LM 'checkpoint', tests/rescoring/standin_lm.py) and
    ``word_counts.txt``."""
    from lhotse import SupervisionSegment, SupervisionSet

    (tmp_path / "lm.txt").write_text(RECIPE_LM_TEXT)
    (tmp_path / "mt.jsonl").write_text(
        "".join(json.dumps({"text": t, "intent": i, "slots": sl}) + "\n" for t, i, sl in MT_TRAIN)
    )
    (tmp_path / "word_counts.txt").write_text(
        "play 9\nhey 9\nbook 9\na 9\ntable 9\nin 9\nrate 9\nthis 9\n"
    )
    for s, rows in RECIPE_SETS.items():
        with open(tmp_path / f"nbest-{s}.jsonl", "w") as f:
            for uid, ref, _, _, hyps in rows:
                f.write(
                    json.dumps(
                        {
                            "id": uid,
                            "ref": ref,
                            "hyps": [{"words": w, "tokens": [], "am_score": a} for w, a in hyps],
                        }
                    )
                    + "\n"
                )
        SupervisionSet.from_segments(
            SupervisionSegment(
                id=uid,
                recording_id=uid,
                start=0,
                duration=1.0,
                text=ref,
                custom={"intent": intent, "slots": slots},
            )
            for uid, ref, intent, slots, _ in rows
        ).to_file(tmp_path / f"nlu_{s}.jsonl.gz")
    return tmp_path
