"""Benchmark: RNN-T training step time on the original train cuts vs with stored speed copies.

One process, two copies of one model (same weights), two loaders of the same epoch: one over
the train cuts, one over the epoch-1 draw of :class:`asr.data.CutCopies` (``train-asr
--speed-cuts``). Steps alternate (A B A B ...), so a load change on the machine hits both alike;
each step's batch loading (features read and collated) and compute (forward, loss, backward,
optimiser step) are timed apart, with the batch's frames and tokens. Measure ratios, not
seconds: they hold on a loaded machine.

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/speed_copies_step.py --cuts data/fbank/snips_cuts_train.jsonl.gz \
        --speed-cuts data/fbank/snips_cuts_train_sp0.9.jsonl.gz \
        data/fbank/snips_cuts_train_sp1.1.jsonl.gz --bpe-model data/lang_bpe_128/bpe.model
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from _common import (
    add_train_data_args,
    asr_setup,
    next_batch,
    timed_step,
    train_loader,
    write_report,
)

from asr.data import CutCopies, load_cuts
from asr.model import build_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_train_data_args(p)
    p.add_argument("--speed-cuts", type=Path, nargs="+", required=True)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    tok, model_cfg, train_cfg = asr_setup(args.bpe_model, args.preset)
    torch.manual_seed(args.seed)
    train = load_cuts(args.cuts)
    drawn = CutCopies.load(tuple(args.speed_cuts), train, tok, model_cfg).choose(
        train, args.seed, 1
    )
    loaders = {
        name: iter(train_loader(c, tok, train_cfg, args.seed))
        for name, c in (("original", train), ("speed_copies", drawn))
    }
    base = build_model(model_cfg).train()
    models = {"original": base, "speed_copies": copy.deepcopy(base)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    rows: dict[str, list[dict]] = {k: [] for k in models}
    for i in range(args.warmup + args.steps):
        for name, model in models.items():
            t0 = time.perf_counter()
            b = next_batch(loaders[name], name, args.warmup + args.steps)
            load_s = time.perf_counter() - t0
            compute_s, _ = timed_step(model, opts[name], b, train_cfg)
            if i >= args.warmup:
                rows[name].append(
                    {
                        "load_s": load_s,
                        "compute_s": compute_s,
                        "frames": int(b["feat_lens"].sum()),
                        "padded_frames": int(b["feats"].shape[0] * b["feats"].shape[1]),
                        "tokens": int(b["target_lens"].sum()),
                        "utts": len(b["ids"]),
                    }
                )
        print(
            f"step {i}: "
            + ", ".join(f"{k} {v[-1]['compute_s']:.3f} s" for k, v in rows.items() if v)
        )

    def mean(name: str, key: str) -> float:
        return sum(r[key] for r in rows[name]) / len(rows[name])

    report = {
        "cuts": str(args.cuts),
        "speed_cuts": [str(x) for x in args.speed_cuts],
        "timed_steps": args.steps,
        "per_step": {k: {key: round(mean(k, key), 4) for key in rows[k][0]} for k in rows},
    }
    a, b = report["per_step"]["original"], report["per_step"]["speed_copies"]
    report["copies_over_original"] = {
        key: round(b[key] / max(a[key], 1e-9), 4) for key in ("load_s", "compute_s", "frames")
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
