"""Word counts of the ASR training transcripts and the rare-word list.

A reference word is *rare* when it occurs fewer than K times in the ASR training transcripts
(OOV words, count 0, are rare too): :func:`common.wer.is_rare`, the rule the scorer uses. ``rare_words.txt`` lists the in-vocabulary
rare words only; scoring must use the counts so that OOV words count as rare. The share of rare
tokens in dev and test is logged and saved.

Usage:
    compute-rare-words --supervisions data/manifests/snips_supervisions_train.jsonl.gz \\
        --eval-manifests data/manifests/snips_nlu_dev.jsonl.gz data/manifests/snips_nlu_test.jsonl.gz \\
        --lang-dir data/lang --threshold 5

OUTPUTS (in --lang-dir):
    word_counts.txt   "word count" per line, most frequent first
    rare_words.txt    in-vocabulary words with count < K
    rare_stats.json   K, vocabulary size, rare-token share per evaluation set
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import SupervisionSet

from common.cli import run_cli
from common.io import InputError, atomic_write
from common.wer import is_rare
from data_prep.checks import check_writable_dir, load_lhotse_manifest


@dataclass
class RareWordOptions:
    supervisions: Path = field(
        default=Path("data/manifests/snips_supervisions_train.jsonl.gz"),
        metadata={"help": "ASR training transcripts"},
    )
    eval_manifests: tuple[Path, ...] = field(
        default=(), metadata={"help": "supervision manifests whose rare-token share is reported"}
    )
    lang_dir: Path = field(default=Path("data/lang"), metadata={"help": "output folder"})
    threshold: int = field(
        default=5, metadata={"help": "K: a word seen fewer than K times is rare"}
    )


def compute_rare_words(opts: RareWordOptions) -> dict:
    if not opts.supervisions.is_file():
        raise InputError(f"{opts.supervisions}: not found (run prepare-snips first)")
    check_writable_dir(opts.lang_dir, "--lang-dir")
    counts = Counter(
        w
        for s in load_lhotse_manifest(opts.supervisions, SupervisionSet)
        for w in (s.text or "").split()
    )
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    rare = sorted(w for w, c in counts.items() if c < opts.threshold)
    stats: dict = {
        "threshold": opts.threshold,
        "vocab_size": len(counts),
        "rare_in_vocab": len(rare),
        "eval": {},
    }
    for m in opts.eval_manifests:
        if not Path(m).is_file():
            raise InputError(f"{m}: not found")
        words = [w for s in load_lhotse_manifest(m, SupervisionSet) for w in (s.text or "").split()]
        n_rare = sum(is_rare(w, counts, opts.threshold) for w in words)
        n_oov = sum(w not in counts for w in words)
        stats["eval"][Path(m).name] = {
            "tokens": len(words),
            "rare_tokens": n_rare,
            "rare_share": n_rare / max(1, len(words)),
            "oov_tokens": n_oov,
        }
        logging.info(
            "%s: %d tokens, %d rare (%.1f%%), %d OOV",
            m,
            len(words),
            n_rare,
            100 * n_rare / max(1, len(words)),
            n_oov,
        )
    with atomic_write(opts.lang_dir / "word_counts.txt") as f:
        f.write("".join(f"{w} {c}\n" for w, c in ranked))
    with atomic_write(opts.lang_dir / "rare_words.txt") as f:
        f.write("".join(f"{w}\n" for w in rare))
    with atomic_write(opts.lang_dir / "rare_stats.json") as f:
        json.dump(stats, f, indent=2)
    logging.info(
        "Vocabulary %d words, %d rare (count < %d)", len(counts), len(rare), opts.threshold
    )
    return stats


def main(argv: list[str] | None = None) -> None:
    run_cli("compute-rare-words", RareWordOptions, compute_rare_words, __doc__, argv)


if __name__ == "__main__":
    main()
