"""Rescore n-best lists: ``total = am_score + λ·lm_score + β·num_words``; pick the best.

λ and β come from ``tune-rescoring`` (``--params tuned.json``, tuned on dev) or the command line.
Writes the rescored records (hypotheses re-sorted by ``total``, with ``lm_score`` and
``total``) and the chosen 1-best per utterance, with intent and slots of the chosen hypothesis
from a multitask LM (``--nlu-checkpoint``, by default the scoring LM if it has NLU heads).
``--select oracle`` picks the hypothesis with the fewest word errors instead (the n-best oracle).

Usage:
    rescore-nbest --nbest exp/asr/x/modified_beam_beam8/nbest-test.jsonl.gz \\
        --params exp/rescore/multitask_rwm/tuned.json --out-dir exp/rescore/multitask_rwm --set-name test
    rescore-nbest --nbest-dir exp/asr/x/modified_beam_beam8 --set-name test \\
        --params exp/rescore/multitask_rwm/tuned.json --out-dir exp/rescore/multitask_rwm
    rescore-nbest --nbest other-asr-test.tsv --refs data/manifests/snips_nlu_test.jsonl.gz \\
        --scorer nlm --lm-checkpoint exp/lm/lm_only/best.pt --lm-scale 0.4 --out-dir out --set-name test

OUTPUTS (in --out-dir):
    rescored-{set}.jsonl.gz   n-best records with lm_score and total, best first
    onebest-{set}.jsonl.gz    {"id", "ref", "hyp", "total", ["intent", "slots"]} per utterance
    rescore-{set}.json        λ, β, scorer, timing (hypotheses/second)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import kaldialign
import numpy as np

from common.cli import run_cli
from common.io import InputError, atomic_write, write_jsonl
from rescoring.nbest import NbestRecord, load_nbest, write_nbest
from rescoring.scorers import SCORERS, Scorer, build_scorer, score_nbest


def word_errors(ref: str, hyp: str) -> int:
    r, h = ref.split(), hyp.split()
    return sum(1 for a, b in kaldialign.align(r, h, "*") if a != b)


@dataclass
class NbestArrays:
    """Padded ``(U, N)`` arrays of an n-best set, for fast λ/β sweeps."""

    am: np.ndarray
    lm: np.ndarray
    num_words: np.ndarray
    errors: np.ndarray
    valid: np.ndarray
    ref_words: int

    @classmethod
    def from_records(cls, records: list[NbestRecord]) -> NbestArrays:
        n = max(len(r.hyps) for r in records)
        shape = (len(records), n)
        am, lm, nw, err = (np.zeros(shape) for _ in range(4))
        valid = np.zeros(shape, dtype=bool)
        for i, r in enumerate(records):
            for j, h in enumerate(r.hyps):
                am[i, j], lm[i, j] = h.am_score, h.lm_score or 0.0
                nw[i, j], err[i, j], valid[i, j] = (
                    len(h.words.split()),
                    word_errors(r.ref, h.words),
                    True,
                )
        return cls(am, lm, nw, err, valid, sum(len(r.ref.split()) for r in records))

    def choose(self, lm_scale: float, word_bonus: float) -> np.ndarray:
        total = np.where(
            self.valid, self.am + lm_scale * self.lm + word_bonus * self.num_words, -np.inf
        )
        return total.argmax(axis=1)  # ties -> the earlier (better first-pass) hypothesis

    def wer(self, chosen: np.ndarray) -> float:
        return 100.0 * self.errors[np.arange(len(chosen)), chosen].sum() / max(1, self.ref_words)


def apply_weights(records: list[NbestRecord], lm_scale: float, word_bonus: float) -> None:
    """Set ``total`` and re-sort each list by it (stable: ties keep first-pass order)."""
    for r in records:
        for h in r.hyps:
            h.total = (
                h.am_score + lm_scale * (h.lm_score or 0.0) + word_bonus * len(h.words.split())
            )
        r.hyps.sort(key=lambda h: -h.total)


def select_oracle(records: list[NbestRecord]) -> None:
    """Move the hypothesis with the fewest word errors to the front of each list."""
    for r in records:
        best = min(range(len(r.hyps)), key=lambda j: (word_errors(r.ref, r.hyps[j].words), j))
        r.hyps.insert(0, r.hyps.pop(best))


def write_outputs(
    records: list[NbestRecord], out_dir: Path, set_name: str, nlu: Scorer | None, info: dict
) -> None:
    """Write rescored records, the 1-best (with NLU if available) and run info."""
    best = [r.hyps[0].words for r in records]
    nlu_out = nlu.predict_nlu(best) if nlu is not None else None
    onebest = []
    for i, r in enumerate(records):
        row = {"id": r.id, "ref": r.ref, "hyp": best[i], "total": r.hyps[0].total}
        if nlu_out is not None:
            row["intent"], row["slots"] = nlu_out[i]
        onebest.append(row)
    write_nbest(out_dir / f"rescored-{set_name}.jsonl.gz", records)
    write_jsonl(out_dir / f"onebest-{set_name}.jsonl.gz", onebest)
    with atomic_write(out_dir / f"rescore-{set_name}.json") as f:
        json.dump(info, f, indent=2)


def load_nlu(nlu_checkpoint: Path | None, scorer: Scorer) -> Scorer | None:
    """The model that gives intent + slots of the chosen hypothesis (the scorer itself if it is
    that checkpoint or none is given and it has NLU heads, so no model is loaded twice)."""
    if nlu_checkpoint is None:
        return scorer if scorer.has_nlu_heads else None
    same = Path(nlu_checkpoint) == getattr(scorer, "checkpoint", None)
    s = scorer if same else build_scorer("nlm", nlu_checkpoint)
    if not s.has_nlu_heads:
        raise InputError(f"{nlu_checkpoint}: --nlu-checkpoint has no NLU heads (an LM-only model)")
    return s


@dataclass
class RescoreConfig:
    nbest: Path = field(
        default=Path("nbest-test.jsonl.gz"),
        metadata={
            "help": "n-best file: ours (.jsonl[.gz]), external TSV (.tsv/.txt) or lattices (.ark)"
        },
    )
    nbest_dir: Path | None = field(
        default=None,
        metadata={
            "help": "decode folder; reads <dir>/nbest-<set-name>.jsonl.gz (overrides --nbest)"
        },
    )
    refs: Path | None = field(
        default=None,
        metadata={
            "help": "references (supervision manifest or 'utt words' text); needed for TSV/.ark"
        },
    )
    out_dir: Path = field(default=Path("exp/rescore"), metadata={"help": "output folder"})
    set_name: str = field(default="test", metadata={"help": "name of the set in output names"})
    params: Path | None = field(
        default=None,
        metadata={
            "help": "tuned.json from tune-rescoring (scorer, checkpoint, λ, β); options below override"
        },
    )
    scorer: str | None = field(default=None, metadata={"help": f"one of {sorted(SCORERS)}"})
    lm_checkpoint: Path | None = field(default=None, metadata={"help": "train-lm checkpoint"})
    nlu_checkpoint: Path | None = field(
        default=None,
        metadata={
            "help": "multitask LM for intent/slots of the chosen hypothesis (default: the scorer's)"
        },
    )
    lm_scale: float | None = field(default=None, metadata={"help": "λ"})
    word_bonus: float | None = field(default=None, metadata={"help": "β"})
    select: str = field(default="total", metadata={"help": "total | oracle"})
    batch_size: int = field(default=64, metadata={"help": "LM batch size"})


def rescore(cfg: RescoreConfig) -> dict:
    if cfg.nbest_dir is not None:
        cfg.nbest = cfg.nbest_dir / f"nbest-{cfg.set_name}.jsonl.gz"
    p = json.loads(cfg.params.read_text()) if cfg.params else {}
    scorer_name = cfg.scorer or p.get("scorer", "none")
    ckpt = cfg.lm_checkpoint or (Path(p["lm_checkpoint"]) if p.get("lm_checkpoint") else None)
    lm_scale = cfg.lm_scale if cfg.lm_scale is not None else p.get("lm_scale", 0.0)
    word_bonus = cfg.word_bonus if cfg.word_bonus is not None else p.get("word_bonus", 0.0)
    nlu_ckpt = cfg.nlu_checkpoint or (
        Path(p["nlu_checkpoint"]) if p.get("nlu_checkpoint") else None
    )
    if cfg.select not in ("total", "oracle"):
        raise InputError(f"--select must be 'total' or 'oracle', got {cfg.select!r}")
    records = load_nbest(cfg.nbest, cfg.refs)
    scorer = build_scorer(scorer_name, ckpt, cfg.batch_size)
    t0 = time.time()
    stats = score_nbest(records, scorer)
    apply_weights(records, lm_scale, word_bonus)
    if cfg.select == "oracle":
        select_oracle(records)
    info = {
        "scorer": scorer_name,
        "lm_checkpoint": str(ckpt) if ckpt else None,
        "lm_scale": lm_scale,
        "word_bonus": word_bonus,
        "select": cfg.select,
        "nbest": str(cfg.nbest),
        "lm_timing": stats,
    }
    write_outputs(records, cfg.out_dir, cfg.set_name, load_nlu(nlu_ckpt, scorer), info)
    logging.info(
        "Rescored %d utterances of %s (λ=%.3f, β=%.3f) in %.1f s -> %s",
        len(records),
        cfg.nbest,
        lm_scale,
        word_bonus,
        time.time() - t0,
        cfg.out_dir,
    )
    return info


def main(argv: list[str] | None = None) -> None:
    run_cli("rescore-nbest", RescoreConfig, rescore, __doc__, argv, errors=(InputError, ValueError))


if __name__ == "__main__":
    main()
