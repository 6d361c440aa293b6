"""What the benchmark scripts share: the ASR training-step setup, one timed step, the report.

Imported by the scripts of this folder (``python bench/<script>.py`` puts ``bench/`` first on
``sys.path``); not part of the installed package.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from asr.config import ModelConfig, TrainConfig, get_model_preset, get_train_preset
from asr.data import Tokenizer, load_cuts, make_dataloader
from asr.objective import TransducerForward, compute_loss
from common.io import atomic_write

CPU = torch.device("cpu")
VOICE_GROUPS = ("family", "engine", "voice")


def voice_of(custom: Mapping, group: str = "voice") -> str:
    """The TTS voice group of a supervision's ``custom`` (``tts_engine`` / ``tts_voice``, "?"
    where missing): ``"engine"`` the engine alone, ``"voice"`` ``engine:voice``, ``"family"``
    as ``"voice"`` except that espeak-ng's variants are one group (``espeak-ng``)."""
    if group not in VOICE_GROUPS:
        raise ValueError(f"voice group {group!r}: expected one of {VOICE_GROUPS}")
    engine = str(custom.get("tts_engine", "?"))
    if group == "engine" or (group == "family" and engine == "espeak-ng"):
        return engine
    return f"{engine}:{custom.get('tts_voice', '?')}"


def add_train_data_args(p: argparse.ArgumentParser, bpe_model: bool = True) -> None:
    """The options of the benches that take training steps: ``--cuts`` (a train CutSet with
    features), ``--bpe-model`` (unless ``bpe_model`` is false) and ``--preset``."""
    p.add_argument("--cuts", type=Path, required=True, help="train CutSet with features")
    if bpe_model:
        p.add_argument("--bpe-model", type=Path, required=True, help="the ASR's BPE model")
    p.add_argument(
        "--preset", default="default", help="asr/config.py preset: model, batch size, buckets"
    )


def asr_setup(bpe_model: Path, preset: str) -> tuple[Tokenizer, ModelConfig, TrainConfig]:
    """One intra-op thread (a recipe stage's share of 2 cores), the tokenizer, and the model
    and train configs of ``preset`` (asr/config.py) sized to the tokenizer's vocabulary."""
    torch.set_num_threads(1)
    tok = Tokenizer(bpe_model)
    model_cfg = get_model_preset(preset)
    model_cfg.vocab_size = tok.vocab_size
    return tok, model_cfg, get_train_preset(preset)


def train_loader(cuts, tok: Tokenizer, train_cfg: TrainConfig, seed: int):
    """The shuffled, bucketed training loader as ``train-asr`` builds it (one worker)."""
    return make_dataloader(
        cuts,
        tok,
        train_cfg.max_duration,
        shuffle=True,
        num_buckets=train_cfg.num_buckets,
        seed=seed,
    )


def next_batch(it, what: str, needed: int) -> dict:
    """The next batch of ``it``; a clear exit if the epoch has fewer than ``needed`` batches."""
    try:
        return next(it)
    except StopIteration:
        raise SystemExit(
            f"{what}: one epoch has fewer than the {needed} batches asked for (warm-up + "
            "timed steps); use fewer steps or more cuts"
        ) from None


def first_batches(
    cuts: Path, tok: Tokenizer, train_cfg: TrainConfig, seed: int, n: int
) -> list[dict]:
    """The first ``n`` batches of :func:`train_loader` over the CutSet file ``cuts``; a clear
    exit if one epoch has fewer (:func:`next_batch`)."""
    it = iter(train_loader(load_cuts(cuts), tok, train_cfg, seed))
    return [next_batch(it, str(cuts), n) for _ in range(n)]


def timed_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: dict, train_cfg: TrainConfig
) -> tuple[float, torch.Tensor]:
    """One training step as ``train-asr`` takes it (forward, loss, backward, optimiser step) on
    the CPU; returns its seconds (wall clock) and the loss."""
    t0 = time.perf_counter()
    loss, _ = compute_loss(TransducerForward(model), batch, train_cfg, CPU)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0, loss.detach()


def alternating_steps(
    models: Mapping[str, nn.Module],
    batches: list[dict],
    train_cfg: TrainConfig,
    warmup: int,
    bf16: bool = False,
) -> dict[str, float]:
    """Train every model of ``models`` on each batch in turn (A B C A B C ...: a load change on
    the machine hits all alike), each with its own AdamW; returns each model's mean seconds per
    step over the batches after the first ``warmup``. ``bf16``: steps under CPU bf16 autocast."""
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for i, b in enumerate(batches):
        for name, model in models.items():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                sec, _ = timed_step(model, opts[name], b, train_cfg)
            if i >= warmup:
                times[name].append(sec)
        print(f"step {i}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items() if v))
    return {k: sum(v) / len(v) for k, v in times.items()}


def write_report(report: dict, out: Path | None) -> None:
    """Print ``report`` as JSON and, with ``out``, also write it there atomically."""
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        with atomic_write(out) as f:
            f.write(text + "\n")
