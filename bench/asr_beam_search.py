"""Benchmark: batched modified beam search vs torchaudio's RNNTBeamSearch (the reference).

Same model, same utterances: 1-best WER, n-best oracle WER, decoding seconds, and the speed
ratio. RNNTBeamSearch has no bound on symbols per frame, hence the small default utterance
count.

Usage:
    python bench/asr_beam_search.py --checkpoint exp/asr/conformer_rnnt/epoch-14-avg-4.pt \
        --bpe-model data/lang_bpe_128/bpe.model --cuts data/fbank/snips_cuts_dev.jsonl.gz \
        --num-utts 30 --beam 8 --out exp/asr/bench_beam_search.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from asr.data import Tokenizer, load_cuts, make_dataloader
from asr.decode import load_transducer, to_nbest
from asr.search import build_search
from common.io import atomic_write
from common.wer import compute_wer, oracle_wer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--bpe-model", type=Path, required=True)
    p.add_argument("--cuts", type=Path, required=True)
    p.add_argument("--num-utts", type=int, default=30)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--nbest", type=int, default=8)
    p.add_argument("--step-max-tokens", type=int, default=10, help="RNNTBeamSearch per-frame cap")
    p.add_argument("--methods", nargs="+", default=["greedy", "modified_beam", "torchaudio_beam"])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, _ = load_transducer(args.checkpoint)
    tok = Tokenizer(args.bpe_model)
    cuts = load_cuts(args.cuts).subset(first=args.num_utts)
    audio_s = sum(c.duration for c in cuts)
    batches = list(make_dataloader(cuts, tok, 60.0, shuffle=False))
    report = {
        "checkpoint": str(args.checkpoint),
        "utterances": len(cuts),
        "audio_s": audio_s,
        "beam": args.beam,
        "nbest": args.nbest,
    }
    for name in args.methods:
        search = build_search(name, beam=args.beam, step_max_tokens=args.step_max_tokens)
        refs, nbest, results = {}, {}, []
        t0 = time.time()
        for b in batches:
            for uid, ref, hyps in zip(
                b["ids"], b["texts"], search(model, b["feats"], b["feat_lens"]), strict=True
            ):
                nb = to_nbest(hyps, tok, args.nbest)
                refs[uid] = ref.split()
                nbest[uid] = [h["words"].split() for h in nb]
                results.append((uid, ref.split(), nbest[uid][0] if nbest[uid] else []))
        secs = time.time() - t0
        report[name] = {
            "wer": round(compute_wer(results).wer, 2),
            "oracle_wer": round(oracle_wer(refs, nbest).wer, 2),
            "seconds": round(secs, 2),
            "rtf": round(secs / audio_s, 4),
        }
        print(name, report[name], flush=True)
    if "modified_beam" in report and "torchaudio_beam" in report:
        report["speedup_modified_vs_torchaudio"] = round(
            report["torchaudio_beam"]["seconds"] / max(report["modified_beam"]["seconds"], 1e-9), 2
        )
    print(json.dumps(report, indent=2))
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
