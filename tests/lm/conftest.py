"""Tiny LM / NLU data built by the tests: hand-written NLU rows as a Lhotse SupervisionSet
(``custom`` intent + slots), a small text file, label inventories, and a tiny trained LM."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from lhotse import SupervisionSegment, SupervisionSet

from lm.config import get_preset

# (text, intent, BIO slots)
NLU_ROWS = [
    ("play hey jude by the beatles", "PlayMusic", "O B-track I-track O B-artist I-artist"),
    ("play some jazz music", "PlayMusic", "O O B-genre O"),
    ("play the song yesterday", "PlayMusic", "O O B-music_item B-track"),
    ("what is the weather in paris", "GetWeather", "O O O O O B-city"),
    ("will it snow in boston tomorrow", "GetWeather", "O O B-condition O B-city B-timeRange"),
    ("is it sunny in tokyo today", "GetWeather", "O O B-condition O B-city B-timeRange"),
    ("book a table for two in paris", "BookRestaurant", "O O O O B-party_size O B-city"),
    ("book a table in boston tonight", "BookRestaurant", "O O O O B-city B-timeRange"),
    ("reserve a table for four", "BookRestaurant", "O O O O B-party_size"),
    ("what is the weather in boston", "GetWeather", "O O O O O B-city"),
]
DEV_ROWS = [
    ("play some music by the beatles", "PlayMusic", "O O O O B-artist I-artist"),
    ("what is the weather in tokyo", "GetWeather", "O O O O O B-city"),
    ("book a table for two", "BookRestaurant", "O O O O B-party_size"),
]
TEXT = [
    "play a song by the beatles",
    "what is the weather like today",
    "book a table for four in tokyo",
    "set an alarm for seven am",
    "tell me a joke",
    "will it rain in paris tomorrow",
    "play hey jude",
    "turn the lights off",
]
INTENTS = ["BookRestaurant", "GetWeather", "PlayMusic"]


def slot_tags() -> list[str]:
    names = sorted({t[2:] for _, _, s in NLU_ROWS + DEV_ROWS for t in s.split() if t != "O"})
    return ["O"] + [f"{p}-{n}" for n in names for p in ("B", "I")]


def write_nlu(path: Path, rows, prefix: str = "utt") -> Path:
    sups = [
        SupervisionSegment(
            id=f"{prefix}-{i}",
            recording_id=f"{prefix}-{i}",
            start=0.0,
            duration=1.0,
            text=text,
            custom={"intent": intent, "slots": slots.split()},
        )
        for i, (text, intent, slots) in enumerate(rows)
    ]
    SupervisionSet.from_segments(sups).to_file(path)
    return path


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory) -> Path:
    """A work dir with ``data/lm/{pretrain,finetune}.txt`` and ``data/manifests/...``."""
    d = tmp_path_factory.mktemp("lmdata")
    (d / "data/lm").mkdir(parents=True)
    (d / "data/manifests").mkdir(parents=True)
    all_text = TEXT * 3 + [r[0] for r in NLU_ROWS]
    (d / "data/lm/pretrain.txt").write_text("".join(s + "\n" for s in all_text))
    (d / "data/lm/finetune.txt").write_text("".join(r[0] + "\n" for r in NLU_ROWS))
    m = d / "data/manifests"
    write_nlu(m / "snips_nlu_train.jsonl.gz", NLU_ROWS, "train")
    write_nlu(m / "snips_nlu_dev.jsonl.gz", DEV_ROWS, "dev")
    (m / "snips_intents.txt").write_text("".join(x + "\n" for x in INTENTS))
    (m / "snips_slot_tags.txt").write_text("".join(x + "\n" for x in slot_tags()))
    return d


def tiny_configs(work: Path, mode: str, exp: str, **overrides):
    """Tiny preset with every path under ``work`` (tests never depend on the cwd)."""
    model_cfg, cfg = get_preset("tiny", mode)
    fields = dict(
        exp_dir=work / "exp" / exp,
        train_text=work / "data/lm/pretrain.txt",
        nlu_train=work / "data/manifests/snips_nlu_train.jsonl.gz",
        nlu_dev=work / "data/manifests/snips_nlu_dev.jsonl.gz",
        intents=work / "data/manifests/snips_intents.txt",
        slot_tags=work / "data/manifests/snips_slot_tags.txt",
        bpe_model=work / "data/lang_lm/lm_bpe.model",
        bpe_train_text=work / "data/lm/pretrain.txt",
        bpe_vocab_size=40,
        num_threads=1,
    )
    fields.update(overrides)
    return model_cfg, dataclasses.replace(cfg, **fields)


@pytest.fixture(scope="session")
def pretrained(lm_data) -> Path:
    """A tiny LM pre-trained on the text (2 epochs); returns its best.pt."""
    from lm.train import run

    model_cfg, cfg = tiny_configs(lm_data, "pretrain", "pretrain")
    run(model_cfg, cfg)
    return cfg.exp_dir / "best.pt"


@pytest.fixture(scope="session")
def multitask_ckpt(lm_data, pretrained) -> Path:
    """The tiny pre-trained LM fine-tuned multitask (RWM, 3 epochs); returns its best.pt."""
    from lm.train import run

    model_cfg, cfg = tiny_configs(
        lm_data, "finetune-multitask", "ft_rwm", scheduler="rwm", init_from=pretrained
    )
    run(model_cfg, cfg)
    return cfg.exp_dir / "best.pt"
