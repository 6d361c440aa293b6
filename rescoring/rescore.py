"""Rescore n-best lists: ``total = am_score + λ·lm_score + β·num_words``; pick the best.

``am_score`` stands for the first-pass score: for a contextually biased decoding or one with a
length bonus (hypotheses with ``context_score`` / ``length_score``) it is their sum with
``am_score``, the score the search ranked by, so that λ = β = 0 keeps the first-pass 1-best.

The formula is :func:`rescoring.params.total_score`, the one every stage uses, on the
features ``am``, ``lm:<scorer>`` and ``num_words`` of each hypothesis (:func:`hyp_features`).
λ and β (:meth:`rescoring.params.Weights.lm_bonus`) come from ``tune-rescoring`` (``--params
tuned.json``, tuned on dev) or the command line.
Writes the rescored records (hypotheses re-sorted by ``total``, with ``lm_score`` and
``total``) and the chosen 1-best per utterance, with intent and slots of the chosen hypothesis
from a multitask LM (``--nlu-checkpoint``, by default the scoring LM if it has NLU heads).
``--select oracle`` picks the hypothesis with the fewest word errors instead (the n-best oracle).

Usage:
    rescore-nbest --nbest exp/asr/x/modified_beam_beam8/nbest-test.jsonl.gz \\
        --params exp/rescore/<system>/tuned.json --out-dir exp/rescore/<system> --set-name test
    rescore-nbest --nbest-dir exp/asr/x/modified_beam_beam8 --set-name test \\
        --params exp/rescore/<system>/tuned.json --out-dir exp/rescore/<system>
    rescore-nbest --nbest other-asr-test.tsv --refs data/manifests/nlu_test.jsonl.gz \\
        --scorer nlm --lm-checkpoint exp/lm/<lm>/best.pt --lm-scale 0.4 --out-dir out --set-name test

OUTPUTS (in --out-dir; one all-or-nothing set, see rescoring/outputs.py):
    rescored-{set}.jsonl.gz   n-best records with lm_score and total, best first
    onebest-{set}.jsonl.gz    {"id", "ref", "hyp", "total", ["intent", "slots"]} per utterance
    rescore-{set}.json        λ, β, scorer, timing (hypotheses/second)
    set-rescore-{set}.json    written last: each file's sha256 and the run's parameters

The output folder is locked for the run (a second run into it fails at once); the files are
staged and renamed into place together, so a failed run leaves the previous set as it was.
``score-wer`` reads ``onebest-*`` only when the set manifest vouches for it. Every n-best field
is type-checked (errors name ``file:line (utt id)``); ``--params`` is validated (unknown or
missing keys are errors) and its paths are relative to the tuned.json's own folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import run_cli
from common.io import InputError, atomic_write, write_jsonl
from rescoring.features import AM
from rescoring.nbest import DEFAULT_MAX_HYPS, Hyp, NbestRecord, load_nbest, write_nbest
from rescoring.outputs import OutputSet, check_name_part, output_folder, verify_output
from rescoring.params import (
    NUM_WORDS,
    FeatureArrays,
    TunedParams,
    Weights,
    lm_feature,
    read_tuned,
    total_score,
    word_errors,
)
from rescoring.scorers import SCORERS, Scorer, build_scorer, score_cache, score_nbest


def hyp_features(h: Hyp, lm: str | None) -> dict[str, float]:
    """The features ``rescore-nbest`` combines: ``am`` (the first-pass score), the scorer's LM
    score as ``lm`` (``lm:<scorer>``; none for ``--scorer none``) and ``num_words``."""
    f = {AM: h.first_pass_score, NUM_WORDS: float(len(h.words.split()))}
    if lm is not None:
        f[lm] = h.lm_score or 0.0
    return f


def nbest_arrays(records: list[NbestRecord], lm: str | None) -> FeatureArrays:
    """Padded arrays of :func:`hyp_features` of every hypothesis, for the λ/β sweep."""
    names = [AM, NUM_WORDS] + ([lm] if lm else [])
    return FeatureArrays.build(records, names, lambda h: hyp_features(h, lm))


def apply_weights(records: list[NbestRecord], weights: Weights, lm: str | None) -> None:
    """Set ``total`` and re-sort each list by it (stable: ties keep first-pass order)."""
    for r in records:
        for h in r.hyps:
            h.total = total_score(hyp_features(h, lm), weights)
        r.hyps.sort(key=lambda h: -h.total)


def select_oracle(records: list[NbestRecord]) -> None:
    """Move the hypothesis with the fewest word errors to the front of each list."""
    for r in records:
        best = min(range(len(r.hyps)), key=lambda j: (word_errors(r.ref, r.hyps[j].words), j))
        r.hyps.insert(0, r.hyps.pop(best))


def write_outputs(
    records: list[NbestRecord], folder: Path, set_name: str, nlu: Scorer | None, info: dict
) -> None:
    """Write rescored records, the 1-best (with NLU if available) and run info into ``folder``.

    ``folder`` is the staging folder of an :class:`~rescoring.outputs.OutputSet`: the files are
    published together, or not at all.
    """
    best = [r.hyps[0].words for r in records]
    nlu_out = nlu.predict_nlu(best) if nlu is not None else None
    onebest = []
    for i, r in enumerate(records):
        row = {"id": r.id, "ref": r.ref, "hyp": best[i], "total": r.hyps[0].total}
        if nlu_out is not None:
            row["intent"], row["slots"] = nlu_out[i]
        onebest.append(row)
    write_nbest(folder / f"rescored-{set_name}.jsonl.gz", records)
    write_jsonl(folder / f"onebest-{set_name}.jsonl.gz", onebest)
    with atomic_write(folder / f"rescore-{set_name}.json") as f:
        json.dump(info, f, indent=2)


def load_nlu(nlu_checkpoint: Path | None, scorer: Scorer) -> Scorer | None:
    """The model that gives intent + slots of the chosen hypothesis (the scorer itself if it is
    that checkpoint or none is given and it has NLU heads, so no model is loaded twice)."""
    if nlu_checkpoint is None:
        return scorer if scorer.has_nlu_heads else None
    same = (
        scorer.name == "nlm"
        and scorer.checkpoint is not None
        and Path(nlu_checkpoint).resolve() == Path(scorer.checkpoint).resolve()
    )
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
    out_dir: Path = field(
        default=Path("exp/rescore"),
        metadata={"help": "output folder (created; locked for the run: one run at a time)"},
    )
    set_name: str = field(default="test", metadata={"help": "name of the set in output names"})
    params: Path | None = field(
        default=None,
        metadata={
            "help": "tuned.json from tune-rescoring (scorer, checkpoints, λ, β; its paths are "
            "relative to its own folder); options below override"
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
    score_cache: Path | None = field(
        default=None,
        metadata={
            "help": "folder of LM scores to reuse: a sentence list scored before by the same "
            "checkpoint, batch size and threads (rescore-systems: <out-dir>/score-cache)"
        },
    )
    max_hyps: int = field(
        default=DEFAULT_MAX_HYPS,
        metadata={"help": "most hypotheses per utterance; an utterance with more is an error"},
    )


def check_weight(value: float, option: str) -> float:
    if not math.isfinite(value):
        raise InputError(f"{option} must be a finite number, got {value}")
    return value


def check_run_options(batch_size: int, max_hyps: int) -> None:
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    if max_hyps < 1:
        raise InputError(f"--max-hyps must be >= 1, got {max_hyps}")


def rescore(cfg: RescoreConfig) -> dict:
    check_name_part(cfg.set_name, "--set-name")
    check_run_options(cfg.batch_size, cfg.max_hyps)
    if cfg.select not in ("total", "oracle"):
        raise InputError(f"--select must be 'total' or 'oracle', got {cfg.select!r}")
    if cfg.nbest_dir is not None:
        cfg.nbest = cfg.nbest_dir / f"nbest-{cfg.set_name}.jsonl.gz"
    p: TunedParams | None = None
    if cfg.params is not None:
        verify_output(cfg.params)
        p = read_tuned(cfg.params)
    scorer_name = cfg.scorer or (p.scorer if p else "none")
    if scorer_name not in SCORERS:
        raise InputError(f"unknown scorer {scorer_name!r}; known: {sorted(SCORERS)}")
    ckpt = cfg.lm_checkpoint or (p.lm_checkpoint if p else None)
    tuned = p.weights if p else Weights.lm_bonus(None, 0.0, 0.0)
    lm = lm_feature(scorer_name)
    weights = Weights.lm_bonus(
        lm,
        check_weight(cfg.lm_scale if cfg.lm_scale is not None else tuned.lm_scale, "--lm-scale"),
        check_weight(
            cfg.word_bonus if cfg.word_bonus is not None else tuned.word_bonus, "--word-bonus"
        ),
    )
    nlu_ckpt = cfg.nlu_checkpoint or (p.nlu_checkpoint if p else None)
    with output_folder(cfg.out_dir):
        verify_output(cfg.nbest)
        records = load_nbest(cfg.nbest, cfg.refs, cfg.max_hyps)
        scorer = build_scorer(scorer_name, ckpt, cfg.batch_size)
        nlu = load_nlu(nlu_ckpt, scorer)
        t0 = time.time()
        stats = score_nbest(records, scorer, score_cache(cfg.score_cache))
        apply_weights(records, weights, lm)
        if cfg.select == "oracle":
            select_oracle(records)
        info = {
            "scorer": scorer_name,
            "lm_checkpoint": str(ckpt) if ckpt else None,
            "lm_scale": weights.lm_scale,
            "word_bonus": weights.word_bonus,
            "select": cfg.select,
            "nbest": str(cfg.nbest),
            "lm_timing": stats,
        }
        params = {k: v for k, v in info.items() if k != "lm_timing"}
        params["nlu_checkpoint"] = str(nlu_ckpt) if nlu_ckpt else None
        with OutputSet(cfg.out_dir, f"rescore-{cfg.set_name}", "rescore-nbest", params) as out:
            write_outputs(records, out.dir, cfg.set_name, nlu, info)
    logging.info(
        "Rescored %d utterances of %s (λ=%.3f, β=%.3f) in %.1f s -> %s",
        len(records),
        cfg.nbest,
        weights.lm_scale,
        weights.word_bonus,
        time.time() - t0,
        cfg.out_dir,
    )
    return info


def main(argv: list[str] | None = None) -> None:
    run_cli("rescore-nbest", RescoreConfig, rescore, __doc__, argv, errors=(InputError, ValueError))


if __name__ == "__main__":
    main()
