"""Validate the prepared manifests: Lhotse's own checks, the audio files, our NLU custom fields.

Checks, per split, on each recordings / supervisions pair:

* ``lhotse.qa.validate_recordings_and_supervisions``;
* for every supervision, that ``custom["intent"]`` is in ``snips_intents.txt`` and
  ``custom["slots"]`` has one valid BIO tag per word of ``text``;
* for every recording, its audio file's header (:mod:`data_prep.checks`): the file exists
  (a relative path is looked up from the current folder), is readable and not truncated, and
  its sampling rate, channel count and duration agree with the manifest (duration within
  10 ms or 1%); with ``--check-samples`` every sample is read and must be finite.

With ``--text-only-nlu true`` (SLURP: one NLU supervision per sentence, several recordings
per sentence) the ``<prefix>_nlu_<split>`` manifests have no recordings: they get the NLU field
checks alone, and the recordings are validated through the supervisions manifests.
The split ``train_renders`` (``prepare-snips --train-renders``: other renderings of the train
utterances) has no NLU manifest of its own: its recordings / supervisions pair is checked.

Every problem is collected; the first ``--max-errors`` are logged, each naming the manifest,
the recording or utterance id and the file, and the run then fails (exit status 2).

Usage:
    validate-manifests --manifest-dir data/manifests [--check-samples true]
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions

from common.cli import run_cli
from common.io import InputError, open_text
from common.speed import RENDER_SPLIT
from data_prep.checks import load_lhotse_manifest, recording_audio_problems

_BIO_RE = re.compile(r"^O$|^[BI]-\S+$")


def nlu_supervision_problems(supervisions, intents: set[str], source: str) -> list[str]:
    """Every text/intent/slots problem of the supervisions, each naming ``source`` and the id."""
    problems = []
    for s in supervisions:
        words = (s.text or "").split()
        if not words:
            problems.append(f"{source}: {s.id}: empty transcript")
            continue
        custom = s.custom or {}
        intent, slots = custom.get("intent"), custom.get("slots")
        if intent not in intents:
            problems.append(f"{source}: {s.id}: unknown intent {intent!r}")
        if not isinstance(slots, list) or len(slots) != len(words):
            problems.append(
                f"{source}: {s.id}: {len(words)} words but "
                f"{len(slots) if isinstance(slots, list) else 'no'} slot tags"
            )
            continue
        for i, tag in enumerate(slots):
            if (
                not isinstance(tag, str)
                or not _BIO_RE.match(tag)
                or (tag.startswith("I-") and (i == 0 or slots[i - 1][2:] != tag[2:]))
            ):
                problems.append(f"{source}: {s.id}: invalid BIO tag {tag!r} at word {i}")
                break
    return problems


def validate_nlu_supervisions(supervisions, intents: set[str], source: str) -> int:
    """Check text/intent/slots of each supervision; returns how many were checked.

    Raises:
        InputError: naming ``source`` and the utterance id of the first problem.
    """
    supervisions = list(supervisions)
    problems = nlu_supervision_problems(supervisions, intents, source)
    if problems:
        raise InputError(problems[0])
    return len(supervisions)


def read_label_list(path: Path) -> list[str]:
    """One label per line (blank lines ignored); errors name the file (and line)."""
    if not path.is_file():
        raise InputError(f"{path}: not found")
    with open_text(path) as f:
        return [line.strip() for line in f if line.strip()]


@dataclass
class ValidateOptions:
    manifest_dir: Path = field(default=Path("data/manifests"), metadata={"help": "manifest folder"})
    prefix: str = field(default="snips", metadata={"help": "corpus prefix"})
    splits: tuple[str, ...] = field(default=("train", "dev", "test"), metadata={"help": "splits"})
    check_audio: bool = field(
        default=True,
        metadata={
            "help": "read every audio file's header: exists, not truncated, rate, channels "
            "and duration as in the recording manifest"
        },
    )
    check_samples: bool = field(
        default=False,
        metadata={"help": "also read every sample and check it is finite (slower)"},
    )
    max_errors: int = field(
        default=20, metadata={"help": "how many problems to list (all are counted)"}
    )
    text_only_nlu: bool = field(
        default=False,
        metadata={
            "help": "the <prefix>_nlu_<split> manifests are text-only (no recordings): NLU "
            "field checks only (SLURP)"
        },
    )


def validate_manifests(opts: ValidateOptions) -> int:
    """Run every check on every split; returns the number of supervisions checked.

    Raises:
        InputError: after all checks, if any failed (the first ``max_errors`` are logged).
    """
    md, p = opts.manifest_dir, opts.prefix
    if not md.is_dir():
        raise InputError(f"--manifest-dir {md}: no such folder")
    intents = set(read_label_list(md / f"{p}_intents.txt"))
    problems: list[str] = []
    audio_checked: set[tuple[str, str]] = set()  # (split, recording id)
    n_checked = 0
    for split in opts.splits:
        pairs = [(f"{p}_recordings_{split}", f"{p}_supervisions_{split}")]
        # other renderings of train utterances have no NLU set (theirs is train's): the pair only
        has_nlu = split != RENDER_SPLIT
        if has_nlu and opts.text_only_nlu:
            nlu_path = md / f"{p}_nlu_{split}.jsonl.gz"
            try:
                nlu = load_lhotse_manifest(nlu_path, SupervisionSet)
                problems += nlu_supervision_problems(nlu, intents, str(nlu_path))
                n_checked += len(nlu)
            except InputError as e:
                problems.append(str(e))
        elif has_nlu:
            pairs.append(
                (
                    f"{p}_recordings_{split}_all"
                    if split == "train"
                    else f"{p}_recordings_{split}",
                    f"{p}_nlu_{split}",
                )
            )
        for rec_name, sup_name in pairs:
            rec_path, sup_path = md / f"{rec_name}.jsonl.gz", md / f"{sup_name}.jsonl.gz"
            try:
                recs = load_lhotse_manifest(rec_path, RecordingSet)
                sups = load_lhotse_manifest(sup_path, SupervisionSet)
            except InputError as e:
                problems.append(str(e))
                continue
            try:
                validate_recordings_and_supervisions(recs, sups)
            except AssertionError as e:
                problems.append(f"{sup_path}: Lhotse validation failed against {rec_path}: {e}")
            problems += nlu_supervision_problems(sups, intents, str(sup_path))
            n_checked += len(sups)
            if opts.check_audio:
                read_samples = "always" if opts.check_samples else "never"
                for rec in recs:
                    # train_all holds train's recordings; both pairs of dev/test share theirs
                    if (split, rec.id) in audio_checked:
                        continue
                    audio_checked.add((split, rec.id))
                    problems += [
                        f"{rec_path}: recording {rec.id}: {problem}"
                        for problem in recording_audio_problems(rec, read_samples)
                    ]
            logging.info(
                "checked %s (%d supervisions) against %s", sup_path.name, len(sups), rec_path.name
            )
    if problems:
        shown = problems[: max(1, opts.max_errors)]
        for problem in shown:
            logging.error("%s", problem)
        raise InputError(
            f"{md}: {len(problems)} problem(s) found (the first {len(shown)} listed above), "
            f"e.g. {problems[0]}"
        )
    logging.info(
        "OK: %d supervisions, %d recordings' audio checked in %s", n_checked, len(audio_checked), md
    )
    return n_checked


def main(argv: list[str] | None = None) -> None:
    run_cli("validate-manifests", ValidateOptions, validate_manifests, __doc__, argv)


if __name__ == "__main__":
    main()
