"""Which biasing lists each utterance gets: the slot lexicon of its intent, predicted by the
multitask LM's NLU head from the first pass (or, for the upper bound, the gold intent).

The second, biased decoding (``decode-asr --context-lexicon <dir> --context-lists <this>``)
biases every utterance with the phrases of ``intent-<Intent>.txt`` from ``extract-slot-lexicon``.
The intent comes from

* ``--source predicted``: the multitask LM (``--lm-checkpoint``) reads the unbiased first pass
  (``--nbest``): ``--vote 1best`` classifies the 1-best hypothesis; ``--vote nbest`` sums the
  first-pass posteriors (softmax of the n-best scores) of the hypotheses per predicted intent
  and takes the largest;
* ``--source gold``: the reference intent of the supervision manifest (``--gold``): an oracle
  bound, never a system.

A predicted or gold intent without a list in ``--lexicon-dir`` stops the run naming the
utterance (or, with ``--missing global``, the utterance gets the ``global`` list, counted and
logged). With ``--gold`` given in the predicted mode the summary also reports the intent
accuracy of the prediction.

Usage:
    make-context-lists --source predicted --nbest exp/asr/m/decode/nbest-dev.jsonl.gz \\
        --lm-checkpoint exp/lm/pretrained_multitask_rwm/best.pt --lexicon-dir data/lang/lexicons \\
        --gold data/manifests/snips_nlu_dev.jsonl.gz --out exp/context/predicted-dev.tsv
    make-context-lists --source gold --gold data/manifests/snips_nlu_dev.jsonl.gz \\
        --lexicon-dir data/lang/lexicons --out exp/context/gold-dev.tsv

OUTPUTS:
    --out             ``utt_id<TAB>intent-<Intent>`` per utterance, sorted by id (atomic)
    <out>.json        source, vote, checkpoint, intents histogram, fallbacks, intent accuracy
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import run_cli
from common.io import InputError, atomic_write
from rescoring.nbest import read_nbest_jsonl
from rescoring.score import read_gold
from rescoring.scorers import NeuralLM

SOURCES = ("predicted", "gold")
VOTES = ("1best", "nbest")
MISSING = ("error", "global")


@dataclass
class ContextListsConfig:
    source: str = field(default="predicted", metadata={"help": f"one of {SOURCES}"})
    nbest: list[Path] = field(
        default_factory=list,
        metadata={
            "help": "unbiased first-pass n-best JSONL file(s), e.g. dev and test (predicted)"
        },
    )
    lm_checkpoint: Path | None = field(
        default=None, metadata={"help": "multitask LM with NLU heads (predicted)"}
    )
    vote: str = field(
        default="1best", metadata={"help": f"predicted: classify the {' or the '.join(VOTES)}"}
    )
    gold: list[Path] = field(
        default_factory=list,
        metadata={
            "help": "supervision manifest(s) with gold intents (gold; optional for predicted)"
        },
    )
    lexicon_dir: Path = field(
        default=Path("data/lang/lexicons"), metadata={"help": "extract-slot-lexicon output"}
    )
    missing: str = field(
        default="error",
        metadata={"help": f"an intent without a list: {' or '.join(MISSING)} (use global.txt)"},
    )
    out: Path = field(default=Path("context-lists.tsv"), metadata={"help": "output TSV"})
    batch_size: int = field(default=64, metadata={"help": "LM batch size"})

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise InputError(f"--source must be one of {SOURCES}, got {self.source!r}")
        if self.vote not in VOTES:
            raise InputError(f"--vote must be one of {VOTES}, got {self.vote!r}")
        if self.missing not in MISSING:
            raise InputError(f"--missing must be one of {MISSING}, got {self.missing!r}")
        if self.source == "predicted" and (not self.nbest or self.lm_checkpoint is None):
            raise InputError("--source predicted needs --nbest and --lm-checkpoint")
        if self.source == "gold" and not self.gold:
            raise InputError("--source gold needs --gold")
        if self.batch_size < 1:
            raise InputError("--batch-size must be >= 1")
        if not self.lexicon_dir.is_dir():
            raise InputError(f"{self.lexicon_dir}: no such folder (--lexicon-dir)")


def nbest_vote(intents: list[str], scores: list[float]) -> str:
    """The intent with the largest summed posterior (softmax of ``scores``); ties: the
    intent of the better-ranked hypothesis."""
    top = max(scores)
    mass: dict[str, float] = {}
    for intent, s in zip(intents, scores, strict=True):
        mass[intent] = mass.get(intent, 0.0) + math.exp(s - top)
    return max(mass, key=lambda i: (mass[i], -intents.index(i)))


def predict_intents(cfg: ContextListsConfig) -> dict[str, str]:
    """utt id -> intent predicted by the LM's NLU head from the first pass."""
    assert cfg.lm_checkpoint is not None
    records = []
    seen: dict[str, Path] = {}
    for path in cfg.nbest:
        for r in read_nbest_jsonl(path):
            if r.id in seen:
                raise InputError(f"{path} ({r.id}): utterance also in {seen[r.id]}")
            seen[r.id] = path
            records.append(r)
    scorer = NeuralLM(cfg.lm_checkpoint, cfg.batch_size)
    if not scorer.has_nlu_heads:
        raise InputError(f"{cfg.lm_checkpoint}: this LM has no NLU heads (use a multitask LM)")
    out: dict[str, str] = {}
    if cfg.vote == "1best":
        sents = [r.hyps[0].words if r.hyps else "" for r in records]
        for r, (intent, _) in zip(records, scorer.predict_nlu(sents), strict=True):
            out[r.id] = intent
        return out
    flat = [h.words for r in records for h in r.hyps]
    preds = iter(scorer.predict_nlu(flat))
    for r in records:
        intents = [next(preds)[0] for _ in r.hyps]
        scores = [h.first_pass_score for h in r.hyps]
        out[r.id] = nbest_vote(intents, scores) if intents else ""
    return out


def seen_in(cfg: ContextListsConfig, uid: str) -> str:
    for path in cfg.nbest:
        if any(r.id == uid for r in read_nbest_jsonl(path)):
            return str(path)
    return "--nbest"


def make_lists(cfg: ContextListsConfig) -> dict:
    cfg.validate()
    gold = None
    if cfg.gold:
        gold = {}
        for path in cfg.gold:
            for uid, g in read_gold(path).items():
                if uid in gold:
                    raise InputError(f"{path} ({uid}): utterance in two --gold manifests")
                gold[uid] = g | {"path": path}
    if cfg.source == "gold":
        assert gold is not None
        intents = {}
        for uid, g in gold.items():
            if not g["intent"]:
                raise InputError(f"{g['path']} ({uid}): no gold intent (custom.intent)")
            intents[uid] = g["intent"]
    else:
        intents = predict_intents(cfg)
    fallbacks = 0
    rows = []
    for uid in sorted(intents):
        name = f"intent-{intents[uid]}"
        if not intents[uid] or not (cfg.lexicon_dir / f"{name}.txt").is_file():
            if cfg.missing == "error":
                raise InputError(
                    f"{cfg.lexicon_dir}: no list {name}.txt for utterance {uid} (intent "
                    f"{intents[uid]!r}, unknown to the training lexicons; --missing global "
                    "biases such utterances with global.txt)"
                )
            if not (cfg.lexicon_dir / "global.txt").is_file():
                raise InputError(f"{cfg.lexicon_dir}: no global.txt for --missing global")
            fallbacks += 1
            name = "global"
        rows.append(f"{uid}\t{name}\n")
    if fallbacks:
        logging.warning("%d utterance(s) had no intent list: biased with global.txt", fallbacks)
    summary: dict = {
        "source": cfg.source,
        "vote": cfg.vote if cfg.source == "predicted" else None,
        "nbest": [str(p) for p in cfg.nbest],
        "lm_checkpoint": None if cfg.lm_checkpoint is None else str(cfg.lm_checkpoint),
        "lexicon_dir": str(cfg.lexicon_dir),
        "utterances": len(rows),
        "fallback_to_global": fallbacks,
        "intents": dict(sorted(Counter(intents.values()).items())),
    }
    if gold is not None and cfg.source == "predicted":
        missing = sorted(set(intents) - set(gold))
        if missing:
            raise InputError(
                f"{', '.join(map(str, cfg.gold))}: no gold for utterance {missing[0]} of "
                f"{seen_in(cfg, missing[0])}"
            )
        scored = [u for u in intents if gold[u]["intent"]]
        correct = sum(intents[u] == gold[u]["intent"] for u in scored)
        summary["intent_accuracy"] = round(100.0 * correct / max(1, len(scored)), 3)
        logging.info("intent accuracy of the prediction: %.2f%%", summary["intent_accuracy"])
    with atomic_write(cfg.out) as f:
        f.writelines(rows)
    with atomic_write(Path(f"{cfg.out}.json")) as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    logging.info("%s: %d utterances", cfg.out, len(rows))
    return summary


def main(argv: list[str] | None = None) -> None:
    run_cli("make-context-lists", ContextListsConfig, make_lists, __doc__, argv)


if __name__ == "__main__":
    main()
