"""Pseudo-label plain text with a multitask LM's NLU heads; keep the confident sentences.

Every sentence of ``--text`` (e.g. the LM pre-training text) is read by the intent and slot
heads of a multitask ``train-lm`` checkpoint (:meth:`lm.scorer.LMScorer.predict_nlu_scored`).
The confidence of a sentence with ``n`` words is

    confidence = intent_prob * exp(slot_logprob / n)

the posterior of the predicted intent times the geometric mean, over the words, of the slot
head's probability of the chosen tag along the best valid BIO path; in (0, 1].

Threshold: on ``--dev-nlu`` (gold intents and BIO tags), a prediction is correct when the
intent and every tag equal the gold ones. The threshold is the lowest dev confidence ``t`` at
which the dev predictions with confidence >= ``t`` have precision >= ``--min-precision``
(no such ``t`` is an error). ``--threshold`` sets it instead (dev is then only reported).
Sentences with confidence >= threshold are kept; with ``--max-sentences N`` only the N most
confident of them (equal confidences ordered by a shuffle seeded with ``--seed``). The output
keeps the text's line order; the same inputs and options give byte-identical files.

Skipped lines (counted in the stats, the first few logged with ``file:line``): empty lines; a
repeat of an earlier line; a ``--dev-nlu`` sentence (no dev sentence becomes training data);
an ``--exclude-nlu`` sentence (pass the NLU train manifest when ``--text`` contains its text,
as prepare-lm-text's pretrain.txt does, so no gold sentence gets a second, predicted label); a
sentence with characters the LM's tokenizer maps to ``<unk>``; one longer than the model's
``max_len`` subwords. Dev sentences the same rules would skip count as not kept.

Resumable: the sentences to label are split into chunks of ``--chunk-size``, each written
atomically to ``<out stem>.work/chunk-NNNNN.jsonl.gz`` with a fingerprint of the checkpoint
file, the chunk's lines and ``--batch-size``. A re-run (after a kill, or with another
threshold, ``--min-precision`` or ``--max-sentences``) reuses every chunk whose fingerprint
matches and labels the others. ``--out`` and the stats are written to temporary files and
renamed, so a killed run never leaves a partial ``--out``; a re-run with nothing new rewrites
no file. The work folder is locked while labelling and may be deleted after a run.

Bad input (an LM-only checkpoint without NLU heads, a missing or corrupt file, a dev label the
checkpoint does not know, no sentence to label, no threshold that reaches --min-precision)
stops with one line ``pseudo-label-nlu: error: ...`` naming the file (line, utterance), exit
status 2.

Usage:
    pseudo-label-nlu --checkpoint exp/lm/pretrained_multitask_rwm/best.pt \\
        --text data/lm/pretrain.txt --dev-nlu data/manifests/snips_nlu_dev.jsonl.gz \\
        --exclude-nlu data/manifests/snips_nlu_train.jsonl.gz \\
        --out data/manifests/snips_nlu_pseudo.jsonl.gz
    train-lm --mode finetune-multitask --init-from exp/lm/pretrain/best.pt \\
        --nlu-extra data/manifests/snips_nlu_pseudo.jsonl.gz --exp-dir exp/lm/pseudo_multitask

OUTPUTS:
    --out                   the kept sentences as an NLU SupervisionSet (the format of
                            prepare-snips' <corpus>_nlu_*.jsonl.gz that train-lm --nlu-train /
                            --nlu-extra read): ids pseudo-000001..., custom {"intent", "slots",
                            "confidence", "line" (of --text)}
    <out stem>.stats.json   lines read, skipped (per reason), labelled, confidence rule,
                            threshold and how it was chosen, dev precision / recall / coverage
                            at it, sentences kept, kept per intent, checkpoint and text sha256
    <out stem>.work/        the labelled chunks (reused by a re-run)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import random
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lhotse import SupervisionSegment
from tqdm import tqdm

from common.cli import run_cli
from common.io import NLU_DURATION, InputError, atomic_write, dir_lock, file_sha256, open_text
from common.trainer import write_if_changed
from lm.data import Utterance, read_nlu
from lm.scorer import LMScorer, NluPrediction
from lm.tokenizer import UNK_ID

CONFIDENCE_RULE = "intent_prob * exp(slot_logprob / num_words)"
#: format of the work chunks; bump to invalidate chunks written by an older version
CHUNK_FORMAT = 1
SKIP_REASONS = ("empty", "duplicate", "dev_sentence", "excluded", "unknown_chars", "too_long")
_SHOWN_SKIPS = 3  # skipped lines logged per reason


@dataclass
class PseudoLabelConfig:
    """Options of :func:`pseudo_label`."""

    checkpoint: Path = field(
        default=Path("exp/lm/pretrained_multitask_rwm/best.pt"),
        metadata={"help": "multitask train-lm checkpoint (with intent and slot heads)"},
    )
    text: Path = field(
        default=Path("data/lm/pretrain.txt"),
        metadata={"help": "plain text to label, one sentence per line"},
    )
    dev_nlu: Path = field(
        default=Path("data/manifests/snips_nlu_dev.jsonl.gz"),
        metadata={"help": "NLU dev SupervisionSet (gold labels) the threshold is chosen on"},
    )
    exclude_nlu: Path | None = field(
        default=None,
        metadata={"help": "NLU SupervisionSet whose sentences are not labelled (the train set)"},
    )
    out: Path = field(
        default=Path("data/manifests/snips_nlu_pseudo.jsonl.gz"),
        metadata={"help": "output NLU SupervisionSet (.jsonl.gz or .jsonl)"},
    )
    min_precision: float = field(
        default=0.9,
        metadata={"help": "the threshold is the lowest one with at least this dev precision"},
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "confidence threshold in [0, 1] (overrides the choice on dev)"},
    )
    max_sentences: int = field(
        default=0, metadata={"help": "keep at most the N most confident sentences (0 = all)"}
    )
    seed: int = field(
        default=42, metadata={"help": "seed of the order of equal confidences (--max-sentences)"}
    )
    batch_size: int = field(default=64, metadata={"help": "sentences per forward pass"})
    chunk_size: int = field(default=20000, metadata={"help": "sentences per resumable work chunk"})
    num_threads: int = field(default=1, metadata={"help": "torch CPU threads"})

    def validate(self) -> None:
        """Raises :class:`InputError` naming the offending option."""
        if not 0.0 < self.min_precision <= 1.0:
            raise InputError(f"--min-precision must be in (0, 1], got {self.min_precision}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.max_sentences < 0:
            raise InputError("--max-sentences must be >= 0 (0 = all)")
        if min(self.batch_size, self.chunk_size, self.num_threads) < 1:
            raise InputError("--batch-size, --chunk-size and --num-threads must be >= 1")
        if not self.out.name.endswith((".jsonl.gz", ".jsonl")):
            raise InputError(f"--out {self.out}: must end with .jsonl.gz or .jsonl")

    @property
    def stem(self) -> Path:
        """``--out`` without ``.jsonl[.gz]``: the stats and work folder are named after it."""
        name = self.out.name
        return self.out.with_name(name[: name.rindex(".jsonl")])

    @property
    def stats_path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".stats.json")

    @property
    def work_dir(self) -> Path:
        return self.stem.with_name(self.stem.name + ".work")


def confidence(pred: NluPrediction, num_words: int) -> float:
    """:data:`CONFIDENCE_RULE` of a prediction for a sentence of ``num_words`` >= 1 words."""
    return pred.intent_prob * math.exp(pred.slot_logprob / num_words)


@dataclass(frozen=True)
class DevPoint:
    """Dev precision / recall / coverage of the predictions kept at a threshold."""

    threshold: float
    kept: int
    correct_kept: int
    correct: int  # correct predictions at any confidence
    total: int  # dev utterances (skipped ones included)

    @property
    def precision(self) -> float | None:
        return self.correct_kept / self.kept if self.kept else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "utterances": self.total,
            "exact_match": self.correct / self.total,
            "kept": self.kept,
            "precision": self.precision,
            "recall": self.correct_kept / self.correct if self.correct else None,
            "coverage": self.kept / self.total,
        }


def dev_point(
    conf: Sequence[float], correct: Sequence[bool], total: int, threshold: float
) -> DevPoint:
    """The dev predictions kept at ``threshold`` (``conf[i] >= threshold``)."""
    kept = [c >= threshold for c in conf]
    return DevPoint(
        threshold,
        sum(kept),
        sum(k and y for k, y in zip(kept, correct, strict=True)),
        sum(correct),
        total,
    )


def choose_threshold(
    conf: Sequence[float], correct: Sequence[bool], min_precision: float
) -> float | None:
    """The lowest confidence ``t`` among ``conf`` at which the predictions with confidence
    >= ``t`` have precision >= ``min_precision``; None if there is none."""
    order = sorted(range(len(conf)), key=lambda i: -conf[i])
    best, kept, hits, k = None, 0, 0, 0
    while k < len(order):
        t = conf[order[k]]
        while k < len(order) and conf[order[k]] == t:  # equal confidences are kept together
            kept += 1
            hits += bool(correct[order[k]])
            k += 1
        if hits / kept >= min_precision:
            best = t  # descending: the last one that passes is the lowest
    return best


@dataclass
class TextScan:
    """The lines of ``--text`` to label (``(line number, sentence)``) and the skip counts."""

    lines_read: int = 0
    todo: list[tuple[int, str]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def _skip_reason(sentence: str, scorer: LMScorer) -> str | None:
    """``unknown_chars`` / ``too_long`` if the model cannot read ``sentence`` faithfully."""
    ids, _ = scorer.tok.encode_words(sentence.split())
    if UNK_ID in ids:
        return "unknown_chars"
    if len(ids) > scorer.model.cfg.max_len:
        return "too_long"
    return None


def scan_text(path: Path, scorer: LMScorer, dev: set[str], exclude: set[str]) -> TextScan:
    """Read ``path`` and sort its lines into the ones to label and the skipped ones."""
    scan = TextScan()
    seen: set[str] = set()
    with open_text(path) as f:
        for lineno, line in enumerate(tqdm(f, desc=f"read {path.name}", mininterval=2.0), 1):
            scan.lines_read += 1
            sentence = " ".join(line.split())
            reason = None
            if not sentence:
                reason = "empty"
            elif sentence in seen:
                reason = "duplicate"
            elif sentence in dev:
                reason = "dev_sentence"
            elif sentence in exclude:
                reason = "excluded"
            else:
                reason = _skip_reason(sentence, scorer)
            seen.add(sentence)
            if reason is None:
                scan.todo.append((lineno, sentence))
                continue
            scan.skipped[reason] += 1
            if scan.skipped[reason] <= _SHOWN_SKIPS and reason != "duplicate":
                logging.warning("%s:%d: skipped (%s): %r", path, lineno, reason, sentence[:80])
    logging.info(
        "%s: %d lines, %d to label, skipped %s",
        path,
        scan.lines_read,
        len(scan.todo),
        {r: scan.skipped[r] for r in SKIP_REASONS},
    )
    return scan


def load_nlu_scorer(cfg: PseudoLabelConfig) -> LMScorer:
    """The scorer of ``--checkpoint``; an LM-only checkpoint is an error naming it."""
    scorer = LMScorer.from_checkpoint(cfg.checkpoint, batch_size=cfg.batch_size)
    if not scorer.has_nlu_heads:
        raise InputError(
            f"{cfg.checkpoint}: --checkpoint has no NLU heads (an LM-only model, e.g. from "
            "train-lm --mode pretrain or finetune-lm); use a multitask checkpoint "
            "(--mode multitask or finetune-multitask)"
        )
    return scorer


def _chunk_fingerprint(ckpt_sha: str, batch_size: int, chunk: list[tuple[int, str]]) -> str:
    key = {"format": CHUNK_FORMAT, "checkpoint": ckpt_sha, "batch_size": batch_size}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for lineno, sentence in chunk:
        h.update(f"{lineno}\t{sentence}\n".encode())
    return h.hexdigest()


def _read_chunk(
    path: Path, fingerprint: str, chunk: list[tuple[int, str]]
) -> list[NluPrediction] | None:
    """The predictions of a finished chunk file, or None if it is missing, stale or damaged."""
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            head = json.loads(f.readline())
            rows = [json.loads(line) for line in f]
        if head.get("fingerprint") != fingerprint or len(rows) != len(chunk):
            logging.info("%s: written for other inputs or options: labelling again", path)
            return None
        preds = []
        for row, (lineno, _) in zip(rows, chunk, strict=True):
            if row["line"] != lineno:
                raise ValueError(f"line {row['line']} where {lineno} was expected")
            preds.append(
                NluPrediction(
                    str(row["intent"]),
                    [str(t) for t in row["tags"]],
                    float(row["intent_prob"]),
                    float(row["slot_logprob"]),
                )
            )
        return preds
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError) as e:
        logging.warning("%s: unreadable chunk (%s): labelling again", path, e)
        return None


def _write_chunk(
    path: Path, fingerprint: str, chunk: list[tuple[int, str]], preds: list[NluPrediction]
) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps({"fingerprint": fingerprint, "sentences": len(chunk)}) + "\n")
        for (lineno, _), p in zip(chunk, preds, strict=True):
            row = {"line": lineno, **p._asdict()}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _check_finite(path: Path, chunk: list[tuple[int, str]], preds: list[NluPrediction]) -> None:
    for (lineno, _), p in zip(chunk, preds, strict=True):
        if not (math.isfinite(p.intent_prob) and math.isfinite(p.slot_logprob)):
            raise InputError(
                f"{path}:{lineno}: non-finite NLU score (intent_prob {p.intent_prob}, "
                f"slot_logprob {p.slot_logprob}); is the checkpoint corrupt?"
            )


def label_text(
    scorer: LMScorer, cfg: PseudoLabelConfig, todo: list[tuple[int, str]], ckpt_sha: str
) -> list[NluPrediction]:
    """Predictions for ``todo``, chunk by chunk, reusing the finished chunks of ``work_dir``
    (``ckpt_sha``: the checkpoint file's sha256, part of each chunk's fingerprint)."""
    step = cfg.batch_size * 16  # sentences per scorer call: progress granularity only
    preds: list[NluPrediction] = []
    reused = 0
    chunks = [todo[k : k + cfg.chunk_size] for k in range(0, len(todo), cfg.chunk_size)]
    with (
        dir_lock(cfg.work_dir, "pseudo-label work folder"),
        tqdm(total=len(todo), desc="pseudo-label", unit="sent", mininterval=2.0) as bar,
    ):
        for k, chunk in enumerate(chunks):
            path = cfg.work_dir / f"chunk-{k:05d}.jsonl.gz"
            fp = _chunk_fingerprint(ckpt_sha, cfg.batch_size, chunk)
            got = _read_chunk(path, fp, chunk)
            if got is not None:
                reused += 1
                bar.update(len(chunk))
            else:
                got = []
                for s in range(0, len(chunk), step):
                    part = chunk[s : s + step]
                    got += scorer.predict_nlu_scored([sentence for _, sentence in part])
                    bar.update(len(part))
                _check_finite(cfg.text, chunk, got)
                _write_chunk(path, fp, chunk, got)
                logging.info(
                    "chunk %d/%d (%s lines %d-%d): %d sentences labelled",
                    k + 1,
                    len(chunks),
                    cfg.text.name,
                    chunk[0][0],
                    chunk[-1][0],
                    len(chunk),
                )
            preds += got
    logging.info("%d chunks: %d reused, %d labelled", len(chunks), reused, len(chunks) - reused)
    return preds


def dev_predictions(scorer: LMScorer, dev: list[Utterance]) -> tuple[list[float], list[bool], int]:
    """(confidence, correct) of each dev utterance the model can read, and how many it skipped
    (too long, unknown characters: never kept, never correct)."""
    gold = []
    for u in dev:
        sentence = " ".join(u.words)
        if _skip_reason(sentence, scorer) is None:
            assert u.intent is not None and u.slots is not None
            tags = [scorer.slot_tags[t] for t in u.slots]
            gold.append((sentence, scorer.intents[u.intent], tags))
    preds = scorer.predict_nlu_scored([s for s, _, _ in gold])
    conf = [confidence(p, len(s.split())) for (s, _, _), p in zip(gold, preds, strict=True)]
    correct = [
        p.intent == intent and p.tags == tags
        for (_, intent, tags), p in zip(gold, preds, strict=True)
    ]
    return conf, correct, len(dev) - len(gold)


def _text_of(path: Path | None, scorer: LMScorer) -> list[Utterance]:
    return [] if path is None else read_nlu(path, scorer.intents, scorer.slot_tags)


def select(conf: Sequence[float], threshold: float, max_sentences: int, seed: int) -> list[int]:
    """Indices (ascending) of the sentences kept: confidence >= ``threshold``, then the
    ``max_sentences`` most confident (0 = all; equal confidences in a ``seed``-ed order)."""
    kept = [i for i, c in enumerate(conf) if c >= threshold]
    if max_sentences and len(kept) > max_sentences:
        tiebreak = list(range(len(conf)))
        random.Random(seed).shuffle(tiebreak)
        kept = sorted(kept, key=lambda i: (-conf[i], tiebreak[i]))[:max_sentences]
    return sorted(kept)


def _records(
    todo: list[tuple[int, str]], preds: list[NluPrediction], conf: list[float], keep: list[int]
) -> list[dict[str, Any]]:
    """The kept sentences as the SupervisionSegment dicts of an NLU manifest."""
    out = []
    for n, i in enumerate(keep, start=1):
        lineno, sentence = todo[i]
        uid = f"pseudo-{n:06d}"
        sup = SupervisionSegment(
            id=uid,
            recording_id=uid,
            start=0.0,
            duration=NLU_DURATION,
            channel=0,
            text=sentence,
            language="English",
            custom={
                "intent": preds[i].intent,
                "slots": list(preds[i].tags),
                "confidence": round(conf[i], 6),
                "line": lineno,
            },
        )
        out.append(sup.to_dict())
    return out


def _write_manifest_if_changed(path: Path, records: list[dict[str, Any]]) -> bool:
    """Write ``records`` as JSON lines (gzip with mtime 0 for ``.gz``, as
    :func:`common.io.write_manifest`) unless ``path`` already holds them; True if written."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with contextlib.suppress(OSError, EOFError, zlib.error, UnicodeError):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            if f.read() == text:
                return False
    with atomic_write(path) as f:
        f.write(text)
    return True


def pseudo_label(cfg: PseudoLabelConfig) -> dict[str, Any]:
    """Label ``cfg.text``, choose the threshold on dev, write the kept sentences and the stats.

    Returns:
        The statistics written to ``cfg.stats_path``.

    Raises:
        InputError: an LM-only checkpoint, a bad input file (naming file:line / utterance),
            no sentence to label, or no threshold reaching ``--min-precision`` on dev.
        CheckpointError: a missing, corrupt or non-LM checkpoint.
    """
    cfg.validate()
    torch.set_num_threads(cfg.num_threads)
    scorer = load_nlu_scorer(cfg)
    dev = read_nlu(cfg.dev_nlu, scorer.intents, scorer.slot_tags)
    exclude = {" ".join(u.words) for u in _text_of(cfg.exclude_nlu, scorer)}

    conf_dev, correct_dev, dev_skipped = dev_predictions(scorer, dev)
    if cfg.threshold is not None:
        threshold, how = cfg.threshold, "--threshold"
    else:
        chosen = choose_threshold(conf_dev, correct_dev, cfg.min_precision)
        if chosen is None:
            raise InputError(
                f"{cfg.dev_nlu}: no confidence threshold gives dev precision >= "
                f"{cfg.min_precision} ({sum(correct_dev)} of {len(dev)} dev predictions "
                "correct); lower --min-precision or give --threshold"
            )
        threshold = chosen
        how = f"dev: lowest threshold with precision >= {cfg.min_precision}"
    at = dev_point(conf_dev, correct_dev, len(dev), threshold)
    logging.info("Threshold %.6f (%s); dev at it: %s", threshold, how, at.as_dict())

    scan = scan_text(cfg.text, scorer, {" ".join(u.words) for u in dev}, exclude)
    if not scan.todo:
        raise InputError(
            f"{cfg.text}: no sentence to label ({scan.lines_read} lines, skipped "
            f"{dict(scan.skipped)})"
        )
    ckpt_sha = file_sha256(cfg.checkpoint)
    preds = label_text(scorer, cfg, scan.todo, ckpt_sha)
    conf = [confidence(p, len(s.split())) for (_, s), p in zip(scan.todo, preds, strict=True)]
    above = sum(c >= threshold for c in conf)
    keep = select(conf, threshold, cfg.max_sentences, cfg.seed)
    per_intent = Counter(preds[i].intent for i in keep)

    if _write_manifest_if_changed(cfg.out, _records(scan.todo, preds, conf, keep)):
        logging.info("Wrote %s", cfg.out)
    stats = {
        "checkpoint": str(cfg.checkpoint),
        "checkpoint_sha256": ckpt_sha,
        "text": str(cfg.text),
        "text_sha256": file_sha256(cfg.text),
        "dev_nlu": str(cfg.dev_nlu),
        "exclude_nlu": None if cfg.exclude_nlu is None else str(cfg.exclude_nlu),
        "lines_read": scan.lines_read,
        "skipped": {r: scan.skipped[r] for r in SKIP_REASONS},
        "labelled": len(scan.todo),
        "confidence": CONFIDENCE_RULE,
        "threshold": threshold,
        "threshold_chosen_by": how,
        "min_precision": cfg.min_precision,
        "dev": {**at.as_dict(), "skipped": dev_skipped},
        "above_threshold": above,
        "max_sentences": cfg.max_sentences,
        "seed": cfg.seed,
        "kept": len(keep),
        "kept_per_intent": dict(sorted(per_intent.items())),
    }
    if write_if_changed(cfg.stats_path, json.dumps(stats, indent=2) + "\n"):
        logging.info("Wrote %s", cfg.stats_path)
    logging.info(
        "Kept %d of %d labelled sentences (%d lines read; %d above threshold %.6f): %s",
        len(keep),
        len(scan.todo),
        scan.lines_read,
        above,
        threshold,
        stats["kept_per_intent"],
    )
    return stats


def main(argv: list[str] | None = None) -> None:
    run_cli("pseudo-label-nlu", PseudoLabelConfig, pseudo_label, __doc__, argv)


if __name__ == "__main__":
    main()
