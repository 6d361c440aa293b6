"""Rescoring throughput: LM time vs the λ/β sweep on real n-best lists.

Scores every distinct hypothesis of the given n-best files once with the chosen scorer
(batched), then times a full default λ x β grid over the cached scores. Prints one JSON object.

Usage:
    python bench/rescoring_speed.py --scorer nlm --lm-checkpoint exp/lm/multitask_rwm/best.pt \\
        exp/asr/conformer_rnnt/modified_beam_beam8/nbest-{dev,test}.jsonl.gz
    python bench/rescoring_speed.py --scorer bigram --lm-checkpoint data/lm/pretrain.txt nbest-dev.jsonl.gz
"""

from __future__ import annotations

import argparse
import json
import time

from rescoring.nbest import load_nbest
from rescoring.params import lm_feature
from rescoring.rescore import nbest_arrays
from rescoring.scorers import SCORERS, build_scorer, score_nbest
from rescoring.tune import TuneConfig, grid, sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("nbest", nargs="+", help="n-best files (ours)")
    ap.add_argument("--scorer", default="nlm", choices=sorted(SCORERS))
    ap.add_argument("--lm-checkpoint", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    records = [r for p in args.nbest for r in load_nbest(p)]
    scorer = build_scorer(args.scorer, args.lm_checkpoint, args.batch_size)
    stats = score_nbest(records, scorer)
    t0 = time.time()
    lm = lm_feature(args.scorer)
    arrays = nbest_arrays(records, lm)
    t_align = time.time() - t0
    c = TuneConfig()
    lambdas = grid(c.lm_scale_min, c.lm_scale_max, c.lm_scale_step)
    betas = grid(c.word_bonus_min, c.word_bonus_max, c.word_bonus_step)
    t0 = time.time()
    rows = sweep(arrays, lm, lambdas, betas)
    t_sweep = time.time() - t0
    print(
        json.dumps(
            {
                "scorer": args.scorer,
                "utterances": len(records),
                "hypotheses": stats["hyps"],
                "distinct_hypotheses": stats["unique"],
                "lm_seconds": round(stats["seconds"], 3),
                "distinct_hyps_per_second": round(stats["hyps_per_second"], 1),
                "hyps_per_second": round(stats["hyps"] / max(stats["seconds"], 1e-9), 1),
                "alignment_seconds": round(t_align, 3),
                "grid_points": len(rows),
                "sweep_seconds": round(t_sweep, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
