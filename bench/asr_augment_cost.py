"""Benchmark: what on-the-fly audio augmentation costs per training batch, per kind.

The batches are the training sampler's (``asr.data.make_sampler``: the preset's
``--max-duration`` and bucket count). For each batch, every variant runs once, in turn (so a load
change on the machine hits them alike): the stored features read and collated (what training
does without augmentation), the on-the-fly fbank of the untouched audio, then each augmentation
of :mod:`asr.augment` at probability 1 (speed 0.9/1.1, reverb from the 100-room bank, white,
pink and babble noise, volume, narrowband) and all of them at the probabilities of ``--all``.
Reported per variant: median milliseconds per batch and per second of audio, and the ratio to
the stored features. One intra-op thread (a recipe stage's share of 2 cores). The RIR bank is
built before timing (once per process in training too; its time is reported apart).

Run from the recipe folder (cut manifests hold relative paths).

Usage:
    python bench/asr_augment_cost.py --cuts data/fbank/snips_cuts_train.jsonl.gz --batches 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import add_train_data_args, write_report
from lhotse import CutSet
from lhotse.dataset.collation import collate_features

from asr.augment import AudioAugment, AugmentSpec, rir_bank
from asr.config import get_train_preset
from asr.data import make_sampler

VARIANTS: dict[str, AugmentSpec] = {
    "fbank on the fly, no augmentation": AugmentSpec(speed=(1.0,)),
    "speed 0.9/1.1": AugmentSpec(speed=(0.9, 1.1)),
    "reverb (room bank)": AugmentSpec(reverb_prob=1.0),
    "white noise": AugmentSpec(noise_prob=1.0, noise_types=("white",)),
    "pink noise": AugmentSpec(noise_prob=1.0, noise_types=("pink",)),
    "babble noise": AugmentSpec(noise_prob=1.0, noise_types=("babble",)),
    "volume": AugmentSpec(volume_prob=1.0),
    "narrowband": AugmentSpec(narrowband_prob=1.0),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_train_data_args(p, bpe_model=False)
    p.add_argument("--batches", type=int, default=20, help="timed batches")
    p.add_argument("--num-mel-bins", type=int, default=80)
    p.add_argument(
        "--all", type=float, default=0.5, help="probability of each kind in the 'all' variant"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = get_train_preset(args.preset)
    cuts = CutSet.from_file(args.cuts).to_eager()
    variants = dict(VARIANTS)
    q = args.all
    variants[f"all at p={q:g} (speed 0.9/1/1.1)"] = AugmentSpec(
        speed=(0.9, 1.0, 1.1), reverb_prob=q, noise_prob=q, volume_prob=q, narrowband_prob=q
    )
    t0 = time.perf_counter()
    rir_bank(args.seed, cuts[0].sampling_rate, AugmentSpec().reverb_rooms)
    bank_s = time.perf_counter() - t0
    augs = {k: AudioAugment(s, seed=args.seed, train_cuts=cuts) for k, s in variants.items()}
    sampler = make_sampler(cuts, cfg.max_duration, True, cfg.num_buckets, seed=args.seed)
    times: dict[str, list[float]] = {"stored features": [], **{k: [] for k in augs}}
    audio_s = []
    for i, batch in enumerate(sampler):
        if i > args.batches:  # batch 0: warm-up (first calls, file caches)
            break
        batch = list(batch)
        t = time.perf_counter()
        collate_features(CutSet.from_cuts(batch))
        lap = {"stored features": time.perf_counter() - t}
        for name, aug in augs.items():
            t = time.perf_counter()
            aug.features(batch, args.num_mel_bins)
            lap[name] = time.perf_counter() - t
        if i == 0:
            continue
        audio_s.append(sum(c.duration for c in batch))
        for k, v in lap.items():
            times[k].append(v)
    if not audio_s:
        raise SystemExit(f"{args.cuts}: no batch to time")
    per_s = statistics.median(audio_s)
    base = statistics.median(times["stored features"])
    rows = {
        k: {
            "ms_per_batch": round(1000 * statistics.median(v), 1),
            "ms_per_audio_second": round(1000 * statistics.median(v) / per_s, 2),
            "x_stored": round(statistics.median(v) / base, 1),
        }
        for k, v in times.items()
    }
    write_report(
        {
            "cuts": str(args.cuts),
            "batches": len(audio_s),
            "median_batch_audio_s": round(per_s, 1),
            "rir_bank_build_s": round(bank_s, 1),
            "threads": torch.get_num_threads(),
            "variants": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
