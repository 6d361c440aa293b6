"""Train a sentencepiece (unigram) model on the ASR training transcripts (icefall's lang_bpe_N).

Token ids 0, 1, 2 are ``<blk>`` (RNN-T blank), ``<sos/eos>`` and ``<unk>``, as in icefall.

Usage:
    train-bpe --supervisions data/manifests/snips_supervisions_train.jsonl.gz \\
        --lang-dir data/lang_bpe_128 --vocab-size 128

OUTPUTS (in --lang-dir):
    bpe.model, bpe.vocab       the sentencepiece model
    tokens.txt                 "<token> <id>" per line
    transcript_words.txt       the training transcripts, one per line
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece as spm
from lhotse import SupervisionSet

from common.cli import run_cli
from common.io import InputError, atomic_write
from data_prep.checks import check_writable_dir, load_lhotse_manifest

SPECIAL_TOKENS = ("<blk>", "<sos/eos>")  # ids 0 and 1; <unk> is id 2


@dataclass
class BpeOptions:
    supervisions: Path = field(
        default=Path("data/manifests/snips_supervisions_train.jsonl.gz"),
        metadata={"help": "training transcripts (Lhotse SupervisionSet)"},
    )
    lang_dir: Path | None = field(
        default=None, metadata={"help": "output (default data/lang_bpe_N)"}
    )
    vocab_size: int = field(default=128, metadata={"help": "number of tokens incl. specials"})
    model_type: str = field(default="unigram", metadata={"help": "unigram or bpe"})


def train_bpe(opts: BpeOptions) -> Path:
    """Train the model unless ``bpe.model`` exists; returns the lang dir."""
    lang_dir = opts.lang_dir or Path(f"data/lang_bpe_{opts.vocab_size}")
    model = lang_dir / "bpe.model"
    if model.is_file():
        logging.info("%s exists: skipping", model)
        return lang_dir
    if not opts.supervisions.is_file():
        raise InputError(f"{opts.supervisions}: not found (run prepare-snips first)")
    check_writable_dir(lang_dir, "--lang-dir")
    sups = list(load_lhotse_manifest(opts.supervisions, SupervisionSet))
    texts = [s.text for s in sups]
    empty = [s.id for s in sups if not (s.text or "").strip()]
    if empty:
        raise InputError(f"{opts.supervisions}: empty transcript for {', '.join(empty[:5])}")
    with atomic_write(lang_dir / "transcript_words.txt") as f:
        f.write("".join(t + "\n" for t in texts))
    with tempfile.TemporaryDirectory(dir=lang_dir) as tmp:
        prefix = Path(tmp) / "bpe"
        spm.SentencePieceTrainer.train(
            input=str(lang_dir / "transcript_words.txt"),
            model_prefix=str(prefix),
            model_type=opts.model_type,
            vocab_size=opts.vocab_size,
            character_coverage=1.0,
            input_sentence_size=100_000_000,
            user_defined_symbols=list(SPECIAL_TOKENS),
            unk_id=len(SPECIAL_TOKENS),
            bos_id=-1,
            eos_id=-1,
            num_threads=1,  # deterministic
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
        with atomic_write(lang_dir / "tokens.txt") as f:
            f.write("".join(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size())))
        shutil.move(str(prefix) + ".vocab", lang_dir / "bpe.vocab")
        shutil.move(str(prefix) + ".model", model)  # last: its presence marks completion
    logging.info("Trained %s (%d tokens) on %d transcripts", model, opts.vocab_size, len(texts))
    return lang_dir


def main(argv: list[str] | None = None) -> None:
    run_cli("train-bpe", BpeOptions, train_bpe, __doc__, argv)


if __name__ == "__main__":
    main()
