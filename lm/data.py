"""LM / NLU data: reading (with file:line errors), subword encoding, length-bucketed batches.

Inputs:
    * plain text, one normalised sentence per line (``data/lm/*.txt``);
    * a Lhotse ``SupervisionSet`` (``snips_nlu_*.jsonl.gz``) with ``custom = {"intent": str,
      "slots": [BIO tag per word]}``, read line by line so an error names the file, line and
      utterance id (an ``intent``-less row is an error in the multitask modes).

Usage:
    intents = read_labels(Path("data/manifests/snips_intents.txt"))
    utts = read_nlu(Path("data/manifests/snips_nlu_dev.jsonl.gz"), intents, slot_tags)
    examples = encode_utterances(utts, tokenizer, max_len=128)
    for batch in iterate_batches(examples, batch_tokens=3000, shuffle=True, seed=1):
        ...  # batch.inputs (N, T)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from common.io import InputError, open_text, read_jsonl
from lm.tokenizer import BOS_ID, EOS_ID, LMTokenizer

IGNORE = -100  # target value ignored by the losses


@dataclass
class Labels:
    """The label inventories of the multitask modes (ids are list positions)."""

    intents: list[str]
    slot_tags: list[str]


@dataclass
class Utterance:
    """One sentence; ``intent``/``slots`` are label ids (None for plain text)."""

    id: str
    words: list[str]
    intent: int | None = None
    slots: list[int] | None = None


@dataclass
class Example:
    """An encoded utterance: subword ids (without bos/eos) and word-start positions."""

    tokens: list[int]
    word_starts: list[int]
    intent: int | None
    slots: list[int] | None


@dataclass
class Batch:
    """A padded batch. T = max tokens + 1 (bos / eos), W = max words."""

    inputs: torch.Tensor  # (N, T) bos t1..tn, padded with eos
    targets: torch.Tensor  # (N, T) t1..tn eos, padded with IGNORE
    lengths: torch.Tensor  # (N,) n + 1
    word_pos: torch.Tensor  # (N, W) input position of each word's first subword, padded 0
    word_end: torch.Tensor  # (N, W) input position of each word's last subword, padded 0
    word_mask: torch.Tensor  # (N, W) bool
    intents: torch.Tensor  # (N,) intent id or IGNORE
    slots: torch.Tensor  # (N, W) slot-tag id or IGNORE

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def read_labels(path: Path) -> list[str]:
    """A label inventory: one label per line, no duplicates."""
    labels = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            lab = line.strip()
            if not lab:
                continue
            if lab in labels:
                raise InputError(f"{path}:{lineno}: duplicate label {lab!r}")
            labels.append(lab)
    if not labels:
        raise InputError(f"{path}: empty label file")
    return labels


def read_text(path: Path) -> list[Utterance]:
    """One sentence per line; an empty line is an error naming ``path:line``."""
    utts = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            words = line.split()
            if not words:
                raise InputError(f"{path}:{lineno}: empty sentence")
            utts.append(Utterance(id=f"{path.name}:{lineno}", words=words))
    if not utts:
        raise InputError(f"{path}: no sentences")
    return utts


def read_nlu(
    path: Path,
    intents: Sequence[str] | None,
    slot_tags: Sequence[str] | None,
) -> list[Utterance]:
    """Read an NLU SupervisionSet (``.jsonl.gz``); labels are mapped to ids when inventories
    are given (text only otherwise).

    Raises:
        InputError: naming file, line and utterance id for an empty text, a slot list whose
            length differs from the word count, or an intent / slot tag not in the inventory.
    """
    intent_id = {x: i for i, x in enumerate(intents)} if intents is not None else None
    slot_id = {x: i for i, x in enumerate(slot_tags)} if slot_tags is not None else None
    utts = []
    for lineno, obj in read_jsonl(path):
        uid = obj.get("id", "?")
        where = f"{path}:{lineno} (utterance {uid})"
        words = str(obj.get("text") or "").split()
        if not words:
            raise InputError(f"{where}: empty sentence")
        utt = Utterance(id=uid, words=words)
        if intent_id is not None or slot_id is not None:
            custom = obj.get("custom") or {}
            if intent_id is not None:
                intent = custom.get("intent")
                if intent not in intent_id:
                    raise InputError(f"{where}: unknown intent {intent!r}")
                utt.intent = intent_id[intent]
            if slot_id is not None:
                slots = custom.get("slots")
                if not isinstance(slots, list) or len(slots) != len(words):
                    n = len(slots) if isinstance(slots, list) else "no"
                    raise InputError(f"{where}: {n} slot labels for {len(words)} words")
                bad = [s for s in slots if s not in slot_id]
                if bad:
                    raise InputError(f"{where}: unknown slot tag {bad[0]!r}")
                utt.slots = [slot_id[s] for s in slots]
        utts.append(utt)
    if not utts:
        raise InputError(f"{path}: no utterances")
    return utts


def encode_utterances(
    utts: Sequence[Utterance], tok: LMTokenizer, max_len: int | None = None
) -> list[Example]:
    """Subword-encode; sentences longer than ``max_len`` tokens are cut (words whose first
    subword falls beyond the cut lose their slot label), with a logged count."""
    out = []
    cut = 0
    for u in utts:
        ids, starts = tok.encode_words(u.words)
        slots = u.slots
        if max_len is not None and len(ids) > max_len:
            cut += 1
            ids = ids[:max_len]
            keep = sum(1 for s in starts if s < max_len)
            starts = starts[:keep]
            slots = slots[:keep] if slots is not None else None
        out.append(Example(tokens=ids, word_starts=starts, intent=u.intent, slots=slots))
    if cut:
        logging.warning("%d sentences longer than %d subwords were truncated", cut, max_len)
    return out


def collate(examples: Sequence[Example]) -> Batch:
    n = len(examples)
    t = max(len(e.tokens) for e in examples) + 1
    w = max(max(len(e.word_starts) for e in examples), 1)
    inputs = torch.full((n, t), EOS_ID, dtype=torch.long)
    targets = torch.full((n, t), IGNORE, dtype=torch.long)
    lengths = torch.empty(n, dtype=torch.long)
    word_pos = torch.zeros((n, w), dtype=torch.long)
    word_end = torch.zeros((n, w), dtype=torch.long)
    word_mask = torch.zeros((n, w), dtype=torch.bool)
    intents = torch.full((n,), IGNORE, dtype=torch.long)
    slots = torch.full((n, w), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e.tokens)
        seq = torch.tensor(e.tokens, dtype=torch.long)
        inputs[i, 0] = BOS_ID
        inputs[i, 1 : k + 1] = seq
        targets[i, :k] = seq
        targets[i, k] = EOS_ID
        lengths[i] = k + 1
        nw = len(e.word_starts)
        # the word's first subword is input position start + 1 (position 0 is bos)
        word_pos[i, :nw] = torch.tensor(e.word_starts, dtype=torch.long) + 1
        # last subword of word j = first of word j+1 minus 1; +1 for bos
        word_end[i, :nw] = torch.tensor(e.word_starts[1:] + [k], dtype=torch.long)
        word_mask[i, :nw] = True
        if e.intent is not None:
            intents[i] = e.intent
        if e.slots is not None:
            slots[i, :nw] = torch.tensor(e.slots, dtype=torch.long)
    return Batch(inputs, targets, lengths, word_pos, word_end, word_mask, intents, slots)


def make_batches(
    lengths: Sequence[int], batch_tokens: int, max_sentences: int, seed: int | None = None
) -> list[list[int]]:
    """Group indices sorted by length into batches of <= ``batch_tokens`` padded tokens
    (sentences of equal length are shuffled with ``seed`` when given)."""
    idx = list(range(len(lengths)))
    if seed is not None:
        random.Random(seed).shuffle(idx)
    order = sorted(idx, key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        m = max(cur_max, lengths[i] + 1)
        if cur and (m * (len(cur) + 1) > batch_tokens or len(cur) >= max_sentences):
            batches.append(cur)
            cur, m = [], lengths[i] + 1
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    return batches


def iterate_batches(
    examples: Sequence[Example],
    batch_tokens: int,
    max_sentences: int = 256,
    shuffle: bool = False,
    seed: int = 0,
    skip: int = 0,
) -> Iterator[Batch]:
    """Length-bucketed batches; with ``shuffle`` the batch order is shuffled with ``seed``;
    the first ``skip`` batches are left out (the trained part of a partial epoch)."""
    batches = make_batches(
        [len(e.tokens) for e in examples], batch_tokens, max_sentences, seed if shuffle else None
    )
    if shuffle:
        random.Random(seed).shuffle(batches)
    for b in batches[skip:]:
        yield collate([examples[i] for i in b])


def num_batches(examples: Sequence[Example], batch_tokens: int, max_sentences: int = 256) -> int:
    return len(make_batches([len(e.tokens) for e in examples], batch_tokens, max_sentences))
