"""Validate the prepared manifests: Lhotse's own checks plus our NLU custom fields.

Checks, per split: ``lhotse.qa.validate_recordings_and_supervisions`` on each recordings /
supervisions pair, and for every supervision that ``custom["intent"]`` is in
``snips_intents.txt`` and ``custom["slots"]`` has one valid BIO tag per word of ``text``.

Usage:
    validate-manifests --manifest-dir data/manifests
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import load_manifest
from lhotse.qa import validate_recordings_and_supervisions

from common.cli import run_cli
from common.io import InputError

_BIO_RE = re.compile(r"^O$|^[BI]-\S+$")


def validate_nlu_supervisions(supervisions, intents: set[str], source: str) -> int:
    """Check text/intent/slots of each supervision; returns how many were checked.

    Raises:
        InputError: naming ``source`` and the utterance id.
    """
    n = 0
    for s in supervisions:
        words = (s.text or "").split()
        if not words:
            raise InputError(f"{source}: {s.id}: empty transcript")
        custom = s.custom or {}
        intent, slots = custom.get("intent"), custom.get("slots")
        if intent not in intents:
            raise InputError(f"{source}: {s.id}: unknown intent {intent!r}")
        if not isinstance(slots, list) or len(slots) != len(words):
            raise InputError(
                f"{source}: {s.id}: {len(words)} words but "
                f"{len(slots) if isinstance(slots, list) else 'no'} slot tags"
            )
        for i, tag in enumerate(slots):
            if not _BIO_RE.match(tag) or (
                tag.startswith("I-") and (i == 0 or slots[i - 1][2:] != tag[2:])
            ):
                raise InputError(f"{source}: {s.id}: invalid BIO tag {tag!r} at word {i}")
        n += 1
    return n


def read_label_list(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: not found")
    return [line.strip() for line in open(path, encoding="utf-8") if line.strip()]


@dataclass
class ValidateOptions:
    manifest_dir: Path = field(default=Path("data/manifests"), metadata={"help": "manifest folder"})
    prefix: str = field(default="snips", metadata={"help": "corpus prefix"})
    splits: tuple[str, ...] = field(default=("train", "dev", "test"), metadata={"help": "splits"})


def validate_manifests(opts: ValidateOptions) -> None:
    md, p = opts.manifest_dir, opts.prefix
    intents = set(read_label_list(md / f"{p}_intents.txt"))
    for split in opts.splits:
        pairs = [
            (f"{p}_recordings_{split}", f"{p}_supervisions_{split}"),
            (
                f"{p}_recordings_{split}_all" if split == "train" else f"{p}_recordings_{split}",
                f"{p}_nlu_{split}",
            ),
        ]
        for rec_name, sup_name in pairs:
            rec_path, sup_path = md / f"{rec_name}.jsonl.gz", md / f"{sup_name}.jsonl.gz"
            for path in (rec_path, sup_path):
                if not path.is_file():
                    raise InputError(f"{path}: not found")
            recs, sups = load_manifest(rec_path), load_manifest(sup_path)
            try:
                validate_recordings_and_supervisions(recs, sups)
            except AssertionError as e:
                raise InputError(f"{sup_path}: Lhotse validation failed: {e}") from e
            n = validate_nlu_supervisions(sups, intents, str(sup_path))
            logging.info("OK %s (%d supervisions) against %s", sup_path.name, n, rec_path.name)


def main(argv: list[str] | None = None) -> None:
    run_cli("validate-manifests", ValidateOptions, validate_manifests, __doc__, argv)


if __name__ == "__main__":
    main()
