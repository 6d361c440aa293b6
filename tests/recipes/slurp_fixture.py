"""A small corpus in SLURP's exact file layout for the recipe test: ``dataset/slurp/*.jsonl``
(annotated sentences with headset and far-field recordings) and short generated FLACs in
``audio/slurp_real/``. Sentences come from templates with entity fillers (seeded), enough text
for a 48-piece BPE model and a few rare words in dev/test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf

TEMPLATES = [
    ("alarm", "set", "wake me up at [time : {time}]"),
    ("alarm", "set", "set an alarm for [time : {time}] [date : {date}]"),
    ("play", "music", "play [artist_name : {artist}] please"),
    ("weather", "query", "what is the weather in [place_name : {city}] [date : {date}]"),
    ("calendar", "set", "remind me about the [event_name : {event}] on [date : {date}]"),
    ("news", "query", "tell me the latest [news_topic : {topic}] news"),
    ("iot", "hue_lightoff", "turn off the lights in the [house_place : {room}]"),
]
FILLERS = {
    "time": ["five am", "six thirty", "seven pm", "noon", "nine fifteen"],
    "date": ["tomorrow", "this week", "on monday", "next friday", "today"],
    "artist": ["the beatles", "adele", "queen", "miles davis", "coldplay"],
    "city": ["london", "paris", "boston", "tokyo", "berlin"],
    "event": ["team meeting", "dentist", "birthday party", "yoga class"],
    "topic": ["sports", "science", "business", "music"],
    "room": ["kitchen", "bedroom", "hallway", "garage"],
}
# words that appear only in dev/test (rare: unseen in training)
HELDOUT = {"city": ["zanzibar", "reykjavik"], "artist": ["bjork"], "room": ["attic"]}


def _row(sid: int, scenario: str, action: str, annotation: str, rng: random.Random) -> dict:
    sentence = annotation
    while "[" in sentence:
        a = sentence.index("[")
        b = sentence.index("]", a)
        sentence = sentence[:a] + sentence[a + 1 : b].split(" : ", 1)[1] + sentence[b + 1 :]
    stamp = 1490000000 + sid
    files = [f"audio-{stamp}-headset.flac"]
    if rng.random() < 0.5:
        files.append(f"audio-{stamp}.flac")
    return {
        "slurp_id": sid,
        "sentence": sentence,
        "sentence_annotation": annotation,
        "intent": f"{scenario}_{action}",
        "action": action,
        "tokens": [
            {"surface": t, "id": i, "lemma": t, "pos": "NN"} for i, t in enumerate(sentence.split())
        ],
        "scenario": scenario,
        "recordings": [{"file": f, "wer": 0.0, "ent_wer": 0.0, "status": "correct"} for f in files],
        "entities": [],
    }


def _rows(n: int, first_id: int, rng: random.Random, heldout: bool) -> list[dict]:
    rows = []
    for k in range(n):
        scenario, action, template = TEMPLATES[k % len(TEMPLATES)]
        fill = {}
        for key, values in FILLERS.items():
            pool = values + (HELDOUT.get(key, []) if heldout and k % 2 == 0 else [])
            fill[key] = rng.choice(pool)
        rows.append(_row(first_id + k, scenario, action, template.format(**fill), rng))
    return rows


def write_slurp_fixture(root: Path, n_train: int = 42, n_eval: int = 10, seed: int = 0) -> Path:
    rng = random.Random(seed)
    splits = {
        "train": _rows(n_train, 1000, rng, heldout=False),
        "devel": _rows(n_eval, 5000, rng, heldout=True),
        "test": _rows(n_eval, 9000, rng, heldout=True),
    }
    ds = root / "dataset" / "slurp"
    ds.mkdir(parents=True)
    for name, rows in splits.items():
        (ds / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    audio = root / "audio" / "slurp_real"
    audio.mkdir(parents=True)
    nrng = np.random.default_rng(seed)
    for rows in splits.values():
        for r in rows:
            for rec in r["recordings"]:
                n = int(16000 * (0.4 + 0.05 * len(r["sentence"].split())))
                t = np.arange(n) / 16000
                x = 0.1 * np.sin(2 * np.pi * (200 + 10 * (r["slurp_id"] % 17)) * t)
                x += 0.01 * nrng.standard_normal(n)
                sf.write(str(audio / rec["file"]), x.astype(np.float32), 16000, format="FLAC")
    return root
