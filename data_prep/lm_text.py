"""Build the leak-free LM training text: normalised external text + SNIPS train text.

Every line of ``--lm-text-dir/*.txt`` (plain text, one utterance per line) and every SNIPS
train utterance is normalised to the same spoken form as the ASR transcripts
(:func:`data_prep.normalize.normalize_text`). Any sentence equal to a dev or test sentence
(after normalisation) is removed, so no evaluation sentence is ever seen by an LM.

The external text is ``--lm-text-dir/*.txt``; the SNIPS recipe passes the project's read-only
``../shared/data/lm_text`` (SLURP, HWU64, CLINC150, SGD, Taskmaster-4, TOP; see its README for
sources and licences) when it exists and no other folder is given. Without any, the
pre-training text is SNIPS train alone (a warning says so).

Usage:
    prepare-lm-text --manifest-dir data/manifests --output-dir data/lm

OUTPUTS (in --output-dir):
    pretrain.txt   external text + SNIPS train text (LM pre-training)
    finetune.txt   SNIPS train text (LM-only / multitask fine-tuning)
    stats.json     line counts per source and how many lines the leak filter removed
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import SupervisionSet
from tqdm import tqdm

from common.cli import run_cli
from common.io import InputError, atomic_write, open_text
from data_prep.checks import check_writable_dir, load_lhotse_manifest
from data_prep.normalize import normalize_text


@dataclass
class LmTextOptions:
    manifest_dir: Path = field(
        default=Path("data/manifests"), metadata={"help": "snips_nlu_* manifests"}
    )
    lm_text_dir: Path | None = field(
        default=None,
        metadata={"help": "folder of *.txt LM text (none: pre-train on the corpus's train text)"},
    )
    output_dir: Path = field(default=Path("data/lm"), metadata={"help": "output folder"})
    prefix: str = field(default="snips", metadata={"help": "corpus prefix of the manifest names"})


def _texts(manifest: Path) -> list[str]:
    if not manifest.is_file():
        raise InputError(f"{manifest}: not found (run prepare-snips first)")
    return [s.text for s in load_lhotse_manifest(manifest, SupervisionSet)]


def prepare_lm_text(opts: LmTextOptions) -> dict[str, int]:
    """Write ``pretrain.txt`` and ``finetune.txt``; returns the statistics."""
    md = opts.manifest_dir
    held_out = set(_texts(md / f"{opts.prefix}_nlu_dev.jsonl.gz"))
    held_out |= set(_texts(md / f"{opts.prefix}_nlu_test.jsonl.gz"))
    train = _texts(md / f"{opts.prefix}_nlu_train.jsonl.gz")
    check_writable_dir(opts.output_dir, "--output-dir")
    stats: dict[str, int] = {}

    def leak_free(lines: list[str], name: str) -> list[str]:
        kept = [s for s in lines if s and s not in held_out]
        stats[f"{name}_lines"] = len(kept)
        stats[f"{name}_removed_eval_sentences"] = sum(1 for s in lines if s in held_out)
        stats[f"{name}_removed_empty"] = sum(1 for s in lines if not s)
        return kept

    finetune = leak_free(train, "snips_train")
    text_dir = opts.lm_text_dir
    external: list[str] = []
    if text_dir is None:
        logging.warning("No --lm-text-dir given: the pre-training text is the train text only")
    else:
        if not Path(text_dir).is_dir():
            raise InputError(f"--lm-text-dir {text_dir}: no such folder")
        files = sorted(Path(text_dir).glob("*.txt"))
        if not files:
            raise InputError(f"--lm-text-dir {text_dir}: no *.txt files")
        for p in files:
            with open_text(p) as f:
                lines = [normalize_text(line) for line in tqdm(f, desc=p.name, mininterval=2.0)]
            external.extend(leak_free(lines, p.stem))
    pretrain = external + finetune
    stats["pretrain_lines"] = len(pretrain)
    stats["pretrain_words"] = sum(len(s.split()) for s in pretrain)
    stats["finetune_lines"] = len(finetune)
    for name, lines in (("pretrain", pretrain), ("finetune", finetune)):
        with atomic_write(opts.output_dir / f"{name}.txt") as f:
            f.write("".join(s + "\n" for s in lines))
    with atomic_write(opts.output_dir / "stats.json") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
    removed = sum(v for k, v in stats.items() if k.endswith("_removed_eval_sentences"))
    logging.info(
        "LM text: pretrain %d lines (%d words), finetune %d lines; %d evaluation sentences removed",
        stats["pretrain_lines"],
        stats["pretrain_words"],
        stats["finetune_lines"],
        removed,
    )
    return stats


def main(argv: list[str] | None = None) -> None:
    run_cli("prepare-lm-text", LmTextOptions, prepare_lm_text, __doc__, argv)


if __name__ == "__main__":
    main()
