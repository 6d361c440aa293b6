"""Benchmark: RNN-T training steps with glibc's default malloc against a raised mmap threshold.

``train-asr --malloc-mmap-threshold-mb`` (common/malloc.py) keeps large tensors on the heap
instead of a fresh mmap per allocation. Each variant trains the same batches (same seed, same
loader) from the same initial weights in its own process, since a malloc setting is
process-wide; the processes alternate (A B A B ...) so a change of load on the machine hits
both alike. Per process: seconds per step (wall clock), minor page faults and kernel (system)
CPU seconds per step, peak resident memory. Measure ratios, not seconds.

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/malloc_mmap_threshold.py --cuts data/fbank/snips_cuts_train.jsonl.gz \
        --bpe-model data/lang_bpe_128/bpe.model --max-duration 120 --thresholds 0 512
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import CPU, add_train_data_args, asr_setup, next_batch, train_loader, write_report

from asr.data import load_cuts
from asr.model import build_model
from asr.objective import TransducerForward, compute_loss
from common.malloc import set_mmap_threshold


def child(args: argparse.Namespace) -> dict:
    """One variant in this process: ``--warmup`` untimed steps, then ``--steps`` timed ones."""
    set_mmap_threshold(args.child)
    tok, model_cfg, train_cfg = asr_setup(args.bpe_model, args.preset)
    train_cfg.max_duration = args.max_duration
    torch.manual_seed(args.seed)
    model = build_model(model_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    it = iter(train_loader(load_cuts(args.cuts), tok, train_cfg, args.seed))
    times, faults, stime = [], [], []
    for i in range(args.warmup + args.steps):
        batch = next_batch(it, "train cuts", args.warmup + args.steps)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.cpu_bf16):
            loss, _ = compute_loss(TransducerForward(model), batch, train_cfg, CPU)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        if i >= args.warmup:
            times.append(t)
            faults.append(r1.ru_minflt - r0.ru_minflt)
            stime.append(r1.ru_stime - r0.ru_stime)
    return {
        "threshold_mb": args.child,
        "s_per_step": statistics.median(times),
        "minor_faults_per_step": statistics.median(faults),
        "system_s_per_step": statistics.median(stime),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_loss": float(loss.detach()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_train_data_args(p)
    p.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch")
    p.add_argument("--thresholds", type=int, nargs="+", default=[0, 512], help="MiB; 0 = glibc's")
    p.add_argument("--rounds", type=int, default=2, help="processes per variant, alternating")
    p.add_argument("--steps", type=int, default=15, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cpu-bf16", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    runs: dict[int, list[dict]] = {t: [] for t in args.thresholds}
    for r in range(args.rounds):
        for t in args.thresholds:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--child", str(t)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[t].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {r + 1} threshold {t} MiB: {runs[t][-1]}", file=sys.stderr)
    base = statistics.median(x["s_per_step"] for x in runs[args.thresholds[0]])
    summary = {
        str(t): {
            "s_per_step": statistics.median(x["s_per_step"] for x in rs),
            "speed_vs_first": base / statistics.median(x["s_per_step"] for x in rs),
            "minor_faults_per_step": statistics.median(x["minor_faults_per_step"] for x in rs),
            "system_s_per_step": statistics.median(x["system_s_per_step"] for x in rs),
            "max_rss_mb": max(x["max_rss_mb"] for x in rs),
        }
        for t, rs in runs.items()
    }
    losses = {x["final_loss"] for rs in runs.values() for x in rs}
    summary["same_final_loss_everywhere"] = len(losses) == 1  # malloc must not change numerics
    write_report(
        {
            "config": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "runs": {str(t): rs for t, rs in runs.items()},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
