"""The LM's own subword model (sentencepiece unigram) and word <-> subword alignment.

The LM does **not** share the ASR's BPE (``data/lang_bpe_N``): that model is trained on the
ASR-subset transcripts only and would split the rare words the LM text teaches into tiny
pieces. The LM trains its own unigram model on ``data/lm/pretrain.txt`` (the text the LM
learns from); every variant (pre-trained, fine-tuned, from-scratch multitask) uses the same
one so their perplexities are comparable. The rescorer scores **word strings**, so the two
vocabularies never need to agree. The serialised model is stored inside every LM checkpoint,
so a checkpoint is self-contained.

Ids: 0 = ``<unk>``, 1 = ``<s>`` (bos), 2 = ``</s>`` (eos). Words are encoded one by one
(sentencepiece splits on whitespace anyway, so this equals encoding the sentence) which gives
each word's first-subword position for slot filling. Any word is scorable: unseen characters
map to ``<unk>``, which has a learned probability.

Usage:
    tok = train_lm_bpe(Path("data/lm/pretrain.txt"), Path("data/lang_lm_unigram_1000/lm_bpe.model"), 1000)
    tok = LMTokenizer.from_file(path)
    pieces, word_starts = tok.encode_words("play hey jude".split())
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
import torch

from common.io import InputError, atomic_write

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


class LMTokenizer:
    """A sentencepiece model kept as bytes (so it can travel inside a checkpoint)."""

    def __init__(self, proto: bytes, source: str = "sentencepiece model"):
        """``source`` names the model's origin (a file) in errors.

        Raises:
            InputError: ``proto`` is not a sentencepiece model, or not one with the LM's ids.
        """
        self.proto = bytes(proto)
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.proto)
        except RuntimeError as e:  # sentencepiece's error for bytes that are not a model
            raise InputError(f"{source}: not a sentencepiece model ({e})") from None
        if self.sp.bos_id() != BOS_ID or self.sp.eos_id() != EOS_ID or self.sp.unk_id() != UNK_ID:
            raise InputError(f"{source}: expected unk=0, bos=1, eos=2 (use train_lm_bpe)")
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> LMTokenizer:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: sentencepiece model not found")
        return cls(path.read_bytes(), source=str(path))

    def to_tensor(self) -> torch.Tensor:
        """The model as a uint8 tensor (loadable with ``torch.load(weights_only=True)``)."""
        return torch.frombuffer(bytearray(self.proto), dtype=torch.uint8).clone()

    @classmethod
    def from_tensor(cls, t: torch.Tensor, source: str = "sentencepiece model") -> LMTokenizer:
        """From :meth:`to_tensor`'s uint8 tensor (a checkpoint's ``tokenizer`` entry)."""
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8:
            raise InputError(f"{source}: not a serialised sentencepiece model (uint8 tensor)")
        return cls(t.numpy().tobytes(), source=source)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = self.sp.encode(word)
            if not ids:  # cannot happen for a non-empty word, but never lose a word
                ids = [UNK_ID]
            if len(self._cache) < 200_000:
                self._cache[word] = ids
        return ids

    def encode_words(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        """Subword ids of a word sequence and the index of each word's first subword."""
        ids: list[int] = []
        starts: list[int] = []
        for w in words:
            starts.append(len(ids))
            ids.extend(self.encode_word(w))
        return ids, starts


def train_lm_bpe(
    text: Path, model_path: Path, vocab_size: int, max_sentences: int = 300_000
) -> LMTokenizer:
    """Train the LM's unigram sentencepiece model on ``text`` unless ``model_path`` exists."""
    if model_path.is_file():
        logging.info("%s exists: using it", model_path)
        return LMTokenizer.from_file(model_path)
    if not text.is_file():
        raise InputError(f"{text}: no such file (text for the LM's sentencepiece model)")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    logging.info("Training LM sentencepiece model (unigram, %d) on %s", vocab_size, text)
    with tempfile.TemporaryDirectory(dir=model_path.parent) as tmp:
        prefix = os.path.join(tmp, "lm_bpe")
        spm.SentencePieceTrainer.train(
            input=str(text),
            model_prefix=prefix,
            model_type="unigram",
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # tiny test texts cannot fill a large vocabulary
            character_coverage=1.0,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=200_000,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_id=-1,
            num_threads=1,  # deterministic
            minloglevel=2,
        )
        proto = Path(prefix + ".model").read_bytes()
    with atomic_write(model_path, "wb") as f:
        f.write(proto)
    tok = LMTokenizer(proto)
    logging.info("Saved %s (%d pieces)", model_path, tok.vocab_size)
    return tok
