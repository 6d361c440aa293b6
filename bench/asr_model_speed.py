"""Benchmark: RNN-T training step time of model-architecture variants, on the same batches.

Each ``--variant NAME=OPTIONS`` is the preset's model changed by ``train-asr`` model options
(parsed by the same code as ``train-asr``'s command line), e.g.
``h15=--half-rate-layers 1:5`` or ``deep="--num-encoder-layers 8 --half-rate-layers 1:7"``;
``NAME=`` alone is the preset. The steps alternate between the variants (A B C A B C ...), so a
load change on the machine hits all alike; the first ``--warmup`` steps of each are not timed.
Reports seconds per step (forward, loss, backward, optimiser step; one thread, bf16 autocast
with ``--bf16``, as the recipe trains on a CPU with bf16), each variant's ratio to the
first, and its parameter count. It times steps only: what a variant costs or buys in accuracy
per step needs trainings (asr/README.md, "Half-rate Conformer layers").

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/asr_model_speed.py --cuts data/fbank/snips_cuts_train.jsonl.gz \
        --bpe-model data/lang_bpe_128/bpe.model --bf16 --steps 12 \
        --variant preset= --variant "h15=--half-rate-layers 1:5" \
        --out exp/asr/bench_model_speed.json
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch
from _common import add_train_data_args, alternating_steps, asr_setup, first_batches, write_report

from asr.config import ModelConfig
from asr.model import build_model, num_params
from common.cli import add_dataclass_args, dataclass_from_args
from common.io import InputError


def parse_variant(spec: str, base: ModelConfig) -> tuple[str, ModelConfig]:
    """``NAME=OPTIONS`` -> (NAME, ``base`` changed by the ``train-asr`` model OPTIONS).

    Raises:
        SystemExit: naming ``spec`` when it has no name, an unknown option or a bad value.
    """
    name, sep, options = spec.partition("=")
    if not sep or not name:
        raise SystemExit(f"--variant {spec!r}: expected NAME=OPTIONS (OPTIONS may be empty)")
    parser = argparse.ArgumentParser(prog=f"--variant {name}", add_help=False, exit_on_error=False)
    add_dataclass_args(parser, ModelConfig)
    try:
        args, unknown = parser.parse_known_args(shlex.split(options))
        if unknown:
            raise SystemExit(f"--variant {spec!r}: not a model option: {' '.join(unknown)}")
        cfg = dataclass_from_args(ModelConfig, args, base=base)
        cfg.validate()
    except (argparse.ArgumentError, InputError) as e:
        raise SystemExit(f"--variant {spec!r}: {e}") from None
    return name, cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_train_data_args(p)
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        help="NAME=OPTIONS (train-asr model options; repeat; the first is the reference)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast steps (train-asr --cpu-bf16)")
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    tok, model_cfg, train_cfg = asr_setup(args.bpe_model, args.preset)
    cfgs = dict(parse_variant(s, model_cfg) for s in args.variant)
    if len(cfgs) != len(args.variant):
        raise SystemExit("--variant: every NAME must be different")
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(args.seed)
        models[name] = build_model(cfg).train()
    batches = first_batches(args.cuts, tok, train_cfg, args.seed, args.warmup + args.steps)
    per_step = alternating_steps(models, batches, train_cfg, args.warmup, bf16=args.bf16)
    ref = next(iter(per_step))
    report = {
        "cuts": str(args.cuts),
        "preset": args.preset,
        "bf16": args.bf16,
        "timed_steps": args.steps,
        "variants": {
            name: {
                "options": spec.partition("=")[2],
                "params": num_params(models[name]),
                "seconds_per_step": round(per_step[name], 4),
                "over_first": round(per_step[name] / per_step[ref], 4),
            }
            for name, spec in zip(cfgs, args.variant, strict=True)
        },
        "batch_utts": [len(b["ids"]) for b in batches[args.warmup :]],
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
