"""Benchmark: RNN-T training step time with torch's dropout vs :class:`common.dropout.FastDropout`.

Two copies of one model (same weights, same batches, one thread): one keeps ``nn.Dropout``
(``--keep-torch-dropout`` build), the other has every dropout module replaced by
``FastDropout``. The steps alternate between the two (A B A B ...), so a load change on the
machine hits both alike; the first ``--warmup`` steps of each are not timed. Reports seconds
per step (forward, loss, backward, optimiser step) of each and their ratio, and with
``--profile`` the share of ``aten::bernoulli_`` (torch's dropout mask) in one profiled torch
step. Measure ratios, not absolute times: they hold on a loaded machine, the seconds do not.

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/dropout_speed.py --cuts data/fbank/snips_cuts_train.jsonl.gz \
        --bpe-model data/lang_bpe_128/bpe.model --steps 30 --out exp/asr/bench_dropout.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn

from asr.config import get_model_preset, get_train_preset
from asr.data import Tokenizer, load_cuts, make_dataloader
from asr.model import build_model
from asr.objective import TransducerForward, compute_loss
from common.dropout import FastDropout
from common.io import atomic_write


def torch_dropout(model: nn.Module) -> int:
    """Turn every FastDropout of ``model`` back into ``nn.Dropout``; returns the count."""
    count = 0
    for name, child in model.named_children():
        if isinstance(child, FastDropout):
            setattr(model, name, nn.Dropout(child.p, child.inplace))
            count += 1
        else:
            count += torch_dropout(child)
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuts", type=Path, required=True, help="train CutSet with features")
    p.add_argument("--bpe-model", type=Path, required=True)
    p.add_argument("--preset", default="default", help="asr/config.py model and train preset")
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="also profile one torch-dropout step")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tok = Tokenizer(args.bpe_model)
    model_cfg = get_model_preset(args.preset)
    model_cfg.vocab_size = tok.vocab_size
    train_cfg = get_train_preset(args.preset)
    fast = build_model(model_cfg).train()
    slow = copy.deepcopy(fast)
    n_drop = torch_dropout(slow)
    variants = {"torch": slow, "fast": fast}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in variants.items()}
    dl = make_dataloader(
        load_cuts(args.cuts), tok, train_cfg.max_duration, shuffle=True, seed=args.seed
    )
    batches = []
    for b in dl:
        batches.append(b)
        if len(batches) == args.warmup + args.steps:
            break
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu = torch.device("cpu")
    for i, b in enumerate(batches):
        for name, model in variants.items():
            t0 = time.perf_counter()
            loss, _ = compute_loss(TransducerForward(model), b, train_cfg, cpu)
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
        print(f"step {i}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items() if v))
    per_step = {k: sum(v) / len(v) for k, v in times.items()}
    report: dict = {
        "cuts": str(args.cuts),
        "preset": args.preset,
        "dropout_modules": n_drop,
        "timed_steps": args.steps,
        "seconds_per_step": {k: round(v, 4) for k, v in per_step.items()},
        "fast_over_torch": round(per_step["fast"] / per_step["torch"], 4),
        "batch_utts": [len(b["ids"]) for b in batches[args.warmup :]],
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss, _ = compute_loss(TransducerForward(slow), batches[-1], train_cfg, cpu)
            loss.backward()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        bern = sum(e.self_cpu_time_total for e in events if e.key == "aten::bernoulli_")
        report["torch_step_bernoulli_share"] = round(bern / max(total, 1), 4)
    print(json.dumps(report, indent=2))
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(report, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
