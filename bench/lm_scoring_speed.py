"""Benchmark LMScorer.score: sentences/second batched vs one at a time (CPU).

Reads sentences from a text file (one per line) or a SupervisionSet (``.jsonl.gz``), scores
them batched (length-sorted, padded) and one at a time, reports both speeds and the largest
difference between the two scores (must be < 1e-4).

Usage:
    .venv/bin/python bench/lm_scoring_speed.py \\
        --checkpoint recipes/snips/exp/lm/pretrained_multitask_rwm/best.pt \\
        --sentences recipes/snips/data/manifests/snips_nlu_dev.jsonl.gz --num-threads 2
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.cli import run_cli
from common.io import atomic_write, open_text, read_jsonl
from lm.scorer import LMScorer


@dataclass
class BenchConfig:
    checkpoint: Path = field(
        default=Path("recipes/snips/exp/lm/pretrained_multitask_rwm/best.pt"),
        metadata={"help": "train-lm checkpoint"},
    )
    sentences: Path = field(
        default=Path("recipes/snips/data/manifests/snips_nlu_dev.jsonl.gz"),
        metadata={"help": "text file or SupervisionSet .jsonl.gz"},
    )
    num_sentences: int = field(default=700, metadata={"help": "sentences scored batched"})
    num_single: int = field(default=200, metadata={"help": "of those, scored one at a time"})
    batch_size: int = field(default=64, metadata={"help": "scorer batch size"})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    repeats: int = field(default=3, metadata={"help": "batched runs (best time is reported)"})
    output: Path | None = field(default=None, metadata={"help": "write the result as JSON"})


def load_sentences(path: Path, n: int) -> list[str]:
    if path.name.endswith(".jsonl.gz") or path.suffix == ".jsonl":
        sents = [str(obj.get("text", "")) for _, obj in read_jsonl(path)]
    else:
        with open_text(path) as f:
            sents = [line.strip() for line in f]
    return sents[:n]


def bench(cfg: BenchConfig) -> dict:
    torch.set_num_threads(cfg.num_threads)
    scorer = LMScorer.from_checkpoint(cfg.checkpoint, batch_size=cfg.batch_size)
    sents = load_sentences(cfg.sentences, cfg.num_sentences)
    scorer.score(sents[:16])  # warm-up
    best = float("inf")
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        batched = scorer.score(sents)
        best = min(best, time.perf_counter() - t0)
    single_sents = sents[: cfg.num_single]
    t0 = time.perf_counter()
    single = [scorer.score([s])[0] for s in single_sents]
    t_single = time.perf_counter() - t0
    diff = max(abs(a - b) for a, b in zip(batched, single, strict=False))
    words = sum(len(s.split()) for s in sents)
    result = {
        "checkpoint": str(cfg.checkpoint),
        "num_threads": cfg.num_threads,
        "batch_size": cfg.batch_size,
        "sentences": len(sents),
        "avg_words": round(words / max(len(sents), 1), 2),
        "batched_sent_per_s": round(len(sents) / best, 1),
        "single_sent_per_s": round(len(single_sents) / t_single, 1),
        "speedup": round((len(sents) / best) / (len(single_sents) / t_single), 1),
        "max_abs_diff_batched_vs_single": diff,
    }
    logging.info("%s", json.dumps(result))
    return result


def _bench_and_write(cfg: BenchConfig) -> None:
    result = bench(cfg)
    print(json.dumps(result, indent=2))
    if cfg.output:
        with atomic_write(cfg.output) as f:
            json.dump(result, f, indent=2)


def main(argv: list[str] | None = None) -> None:
    run_cli("lm_scoring_speed", BenchConfig, _bench_and_write, __doc__, argv, errors=())


if __name__ == "__main__":
    main()
