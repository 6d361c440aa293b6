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
from pathlib import Path

import torch
from _common import (
    CPU,
    add_train_data_args,
    alternating_steps,
    asr_setup,
    first_batches,
    write_report,
)
from torch import nn

from asr.model import build_model
from asr.objective import TransducerForward, compute_loss
from common.dropout import FastDropout


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
    add_train_data_args(p)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="also profile one torch-dropout step")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    tok, model_cfg, train_cfg = asr_setup(args.bpe_model, args.preset)
    torch.manual_seed(args.seed)
    fast = build_model(model_cfg).train()
    slow = copy.deepcopy(fast)
    n_drop = torch_dropout(slow)
    variants = {"torch": slow, "fast": fast}
    batches = first_batches(args.cuts, tok, train_cfg, args.seed, args.warmup + args.steps)
    per_step = alternating_steps(variants, batches, train_cfg, args.warmup)
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
            loss, _ = compute_loss(TransducerForward(slow), batches[-1], train_cfg, CPU)
            loss.backward()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        bern = sum(e.self_cpu_time_total for e in events if e.key == "aten::bernoulli_")
        report["torch_step_bernoulli_share"] = round(bern / max(total, 1), 4)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
