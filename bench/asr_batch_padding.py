"""Benchmark: how much of an RNN-T training step is padding, per batch sampler setting.

The transducer loss (``asr/loss.py``) and the joiner work on the full padded lattice of a batch:
``B x T'_max x (U_max + 1)`` cells (``T'`` encoder frames, ``U`` BPE tokens). A batch of
utterances of equal duration but different token counts (e.g. a slow and a fast TTS voice)
pays for the longest label sequence. This script walks one epoch of the training sampler
(``asr.data.make_sampler``, as ``train-asr`` builds it) over a cut manifest and reports:

* per TTS engine (``custom.tts_engine``), and per voice when there are few: utterances, mean
  duration, BPE tokens per second of audio, encoder frames per token;
* per sampler setting (``--max-duration``, ``--num-buckets``): batches, mean batch size, the
  lattice cells used (``sum_i T'_i (U_i + 1)``) against those computed (``B T'_max (U_max+1)``),
  and the encoder frames used against computed (``sum_i T'_i`` vs ``B T'_max``);
* with ``--time-steps K``: the seconds of K forward+backward steps of the model preset (one
  thread) on the first K batches of the first setting, and a least-squares fit of step seconds
  on computed lattice cells and encoder frames, so the share of the step that padding costs can
  be read off.

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/asr_batch_padding.py --cuts data/fbank/snips_cuts_train.jsonl.gz \\
        --bpe-model data/lang_bpe_128/bpe.model --settings 60:10 60:30 30:10 \\
        --time-steps 20 --out exp/asr/bench_batch_padding.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from _common import add_train_data_args, asr_setup, timed_step, voice_of, write_report

from asr.data import (
    Tokenizer,
    cut_text,
    encoder_frames,
    filter_cuts,
    load_cuts,
    make_dataloader,
    make_sampler,
)
from asr.model import build_model


def per_voice(cuts, tok: Tokenizer, model_cfg, engine_only: bool = False) -> dict[str, dict]:
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])
    for c in cuts:
        custom = (c.supervisions[0].custom or {}) if c.supervisions else {}
        a = acc[voice_of(custom, "engine" if engine_only else "voice")]
        a[0] += 1
        a[1] += c.duration
        a[2] += len(tok.encode(cut_text(c)))
        a[3] += encoder_frames(c, model_cfg)
    return {
        v: {
            "utterances": n,
            "mean_seconds": round(sec / n, 3),
            "tokens_per_second": round(toks / sec, 3),
            "frames_per_token": round(frames / toks, 3),
        }
        for v, (n, sec, toks, frames) in sorted(acc.items())
    }


def batch_shapes(cuts, tok: Tokenizer, model_cfg, max_duration: float, buckets: int, seed: int):
    """(T'_i, U_i) of every utterance of every batch of one epoch."""
    sampler = make_sampler(cuts, max_duration, shuffle=True, num_buckets=buckets, seed=seed)
    sampler.set_epoch(1)
    for batch in sampler:
        yield [(encoder_frames(c, model_cfg), len(tok.encode(cut_text(c)))) for c in batch]


def padding_stats(shapes: list[list[tuple[int, int]]]) -> dict:
    used = computed = f_used = f_comp = 0
    for b in shapes:
        t = np.array([x[0] for x in b])
        u = np.array([x[1] for x in b])
        used += int((t * (u + 1)).sum())
        computed += len(b) * int(t.max()) * (int(u.max()) + 1)
        f_used += int(t.sum())
        f_comp += len(b) * int(t.max())
    return {
        "batches": len(shapes),
        "mean_batch_size": round(float(np.mean([len(b) for b in shapes])), 2),
        "lattice_cells_used": used,
        "lattice_cells_computed": computed,
        "lattice_efficiency": round(used / max(1, computed), 4),
        "encoder_frames_used": f_used,
        "encoder_frames_computed": f_comp,
        "frame_efficiency": round(f_used / max(1, f_comp), 4),
    }


def time_steps(cuts, tok, model_cfg, train_cfg, max_duration, buckets, seed, k) -> dict:
    torch.manual_seed(seed)
    model = build_model(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dl = make_dataloader(cuts, tok, max_duration, shuffle=True, num_buckets=buckets, seed=seed)
    dl.sampler.set_epoch(1)
    rows = []
    for i, batch in enumerate(dl):
        if i >= k + 1:
            break
        sec, _ = timed_step(model, opt, batch, train_cfg)
        b = batch["feats"].shape[0]
        t_max = int(batch["feat_lens"].max())
        u_max = int(batch["target_lens"].max())
        if i == 0:  # warm-up
            continue
        rows.append((sec, b * t_max * (u_max + 1), b * t_max))
    secs = np.array([r[0] for r in rows])
    x = np.array([[r[1], r[2], 1.0] for r in rows], dtype=float)
    coef, *_ = np.linalg.lstsq(x, secs, rcond=None)
    cells_share = float((x[:, 0] * coef[0]).sum() / secs.sum())
    return {
        "steps": len(rows),
        "mean_step_seconds": round(float(secs.mean()), 4),
        "fit_seconds_per_million_cells": round(float(coef[0] * 1e6), 5),
        "fit_seconds_per_thousand_frames": round(float(coef[1] * 1e3), 5),
        "fit_intercept_seconds": round(float(coef[2]), 4),
        "share_of_step_in_lattice_term": round(cells_share, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_train_data_args(ap)
    ap.add_argument(
        "--settings",
        nargs="+",
        default=["60:10"],
        help="MAX_DURATION:NUM_BUCKETS sampler settings (train-asr's default is 60:10)",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--max-voices", type=int, default=50, help="list voices only if there are at most this many"
    )
    ap.add_argument("--time-steps", type=int, default=0, help="time K steps (0 = data only)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    tok, model_cfg, train_cfg = asr_setup(args.bpe_model, args.preset)
    cuts = filter_cuts(load_cuts(args.cuts), tok, model_cfg).to_eager()
    out: dict = {"cuts": str(args.cuts), "utterances": len(cuts)}
    out["per_engine"] = per_voice(cuts, tok, model_cfg, engine_only=True)
    voices = per_voice(cuts, tok, model_cfg)
    out["per_voice"] = voices if len(voices) <= args.max_voices else {}
    out["settings"] = {}
    for s in args.settings:
        dur, buckets = s.split(":")
        shapes = list(batch_shapes(cuts, tok, model_cfg, float(dur), int(buckets), args.seed))
        out["settings"][s] = padding_stats(shapes)
    if args.time_steps:
        dur, buckets = args.settings[0].split(":")
        out["timing"] = {
            args.settings[0]: time_steps(
                cuts,
                tok,
                model_cfg,
                train_cfg,
                float(dur),
                int(buckets),
                args.seed,
                args.time_steps,
            )
        }
    write_report(out, args.out)


if __name__ == "__main__":
    main()
