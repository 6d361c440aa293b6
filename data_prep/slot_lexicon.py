"""Slot lexicons from the NLU labels of the training set: the phrases of each slot type and intent.

The spans are read from each supervision's BIO tags (``custom["slots"]``, one tag per word of
``text``) with seqeval's ``get_entities``, the rule the slot-F1 metric uses
(:func:`rescoring.metrics.slot_spans`): a stray ``I-x`` (not after ``B-x`` / ``I-x``) starts a
span, and two adjacent ``B-x`` are two spans. A phrase is the span's words of the normalised
``text`` joined by single spaces; its count is the number of spans with those words.

**Training data only.** Dev and test must never feed a lexicon (a biasing list built from them
would leak the answers into decoding). The stage refuses its input with an ``InputError`` when:

* the manifest's file name (as given, or after resolving a symlink) has a part ``dev``,
  ``test``, ``valid``, ``validation``, ``eval`` or ``heldout`` (``snips_nlu_dev.jsonl.gz``,
  ``test.jsonl``; parts are split at ``_``, ``-`` and ``.``, so ``contest.jsonl`` passes),
  or its folder is named just that (Kaldi-style ``data/dev/nlu.jsonl.gz``), or
* any supervision id has such a part (``snips-valid-200``, ``snips-test-12``): a held-out
  manifest copied under a training name still carries its split in its ids.

Bad supervisions stop the run with an error naming the file and utterance id: no
``custom["intent"]``, no ``custom["slots"]``, a tag count other than the word count, or a tag
that is neither ``O`` nor ``B-<type>`` / ``I-<type>``. Slot types and intents become file
names, so they must be made of letters, digits, ``_``, ``.`` and ``-``.

Usage:
    extract-slot-lexicon --nlu-manifest data/manifests/snips_nlu_train.jsonl.gz \\
        --out-dir data/lang/lexicons --min-count 1 --max-phrases 0

OUTPUTS (in --out-dir; each list sorted most frequent first, then alphabetically):
    slot-<type>.txt      "phrase<TAB>count" per line: the phrases of that slot type (all intents)
    intent-<Intent>.txt  every slot phrase of the utterances of that intent
    global.txt           every slot phrase
    lexicons.json        list name -> file, phrases, total count; min_count, max_phrases, the
                         source manifest and its sha256 (written last: the index of the lists)

A list may be empty (every phrase below --min-count); it is still written, so every slot type
and intent of the manifest has its file. :func:`common.lexicon.read_lexicon` reads these files back
(and hand-written ones: ``phrase`` alone means count 1).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import SupervisionSegment, SupervisionSet

from common.cli import run_cli
from common.io import InputError, atomic_write, file_sha256
from data_prep.checks import check_writable_dir, load_lhotse_manifest

#: Parts of a file name or utterance id that mark a held-out split (compared lower-cased).
EVAL_SPLIT_MARKERS = frozenset({"dev", "test", "valid", "validation", "eval", "heldout"})
_NAME_PARTS_RE = re.compile(r"[_\-.]+")
#: Slot types and intents become file names: no path separators, no leading dot.
_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass
class SlotLexiconOptions:
    nlu_manifest: Path = field(
        default=Path("data/manifests/snips_nlu_train.jsonl.gz"),
        metadata={"help": "the TRAINING NLU SupervisionSet (dev/test manifests are refused)"},
    )
    out_dir: Path = field(default=Path("data/lang/lexicons"), metadata={"help": "output folder"})
    min_count: int = field(
        default=1, metadata={"help": "keep phrases seen at least this many times in a list"}
    )
    max_phrases: int = field(
        default=0,
        metadata={
            "help": "keep at most this many phrases per list, most frequent first, ties "
            "alphabetical (0 = no limit)"
        },
    )


def eval_split_marker(name: str) -> str | None:
    """The part of ``name`` (a file name or utterance id) that marks a dev/test split, if any."""
    for part in _NAME_PARTS_RE.split(name.lower()):
        if part in EVAL_SPLIT_MARKERS:
            return part
    return None


def _refuse_eval_file(path: Path) -> None:
    for p in dict.fromkeys([path, path.resolve()]):
        what = "the file name" if p == path else f"its target {p}"
        marker = eval_split_marker(p.name)
        if marker is None and p.parent.name.lower() in EVAL_SPLIT_MARKERS:
            marker = p.parent.name.lower()  # Kaldi-style data/dev/..., data/test/...
            what = "the folder name" if p == path else f"its target {p}"
        if marker:
            raise InputError(
                f"{path}: {what} marks a {marker!r} split; slot lexicons are built from the "
                "training NLU manifest only (dev/test must never feed a lexicon)"
            )


def _checked_label(path: Path, sup: SupervisionSegment) -> tuple[str, list[str], list[str]]:
    """(intent, words, tags) of one supervision, or an ``InputError`` naming the utterance."""
    where = f"{path}: utterance {sup.id}"
    custom = sup.custom or {}
    intent = custom.get("intent")
    if not isinstance(intent, str) or not intent:
        raise InputError(f"{where}: no intent (custom['intent'] is {intent!r})")
    if not _SAFE_NAME_RE.match(intent):
        raise InputError(f"{where}: intent {intent!r} is not usable as a file name")
    tags = custom.get("slots")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InputError(f"{where}: no slot tags (custom['slots'] must be a list of BIO tags)")
    words = (sup.text or "").split()
    if len(tags) != len(words):
        raise InputError(
            f"{where}: {len(tags)} slot tags for {len(words)} words (one BIO tag per word)"
        )
    for i, tag in enumerate(tags):
        if tag == "O":
            continue
        if not tag.startswith(("B-", "I-")) or not _SAFE_NAME_RE.match(tag[2:]):
            raise InputError(
                f"{where}: tag {i + 1} {tag!r} is not O, B-<type> or I-<type> "
                "(a type is letters, digits, '_', '.' and '-')"
            )
    return intent, words, tags


def _stray_inside_tags(tags: list[str]) -> int:
    """Number of ``I-x`` tags that do not continue a ``B-x`` / ``I-x`` (each starts a span)."""
    return sum(
        t.startswith("I-") and (i == 0 or tags[i - 1] not in (f"B-{t[2:]}", t))
        for i, t in enumerate(tags)
    )


def _ranked(counts: Counter, min_count: int, max_phrases: int) -> list[tuple[str, int]]:
    """Phrases with count >= ``min_count``, most frequent first then alphabetical, capped."""
    kept = sorted(
        ((p, c) for p, c in counts.items() if c >= min_count), key=lambda x: (-x[1], x[0])
    )
    return kept[:max_phrases] if max_phrases > 0 else kept


def extract_slot_lexicons(opts: SlotLexiconOptions) -> dict:
    """Write the slot, intent and global phrase lists of a training NLU manifest.

    Args:
        opts: the manifest, output folder and list limits.

    Returns:
        The contents of ``lexicons.json``.

    Raises:
        InputError: a dev/test manifest (see the module docstring), a missing or malformed
            manifest, a bad supervision (naming the utterance id), bad options or an output
            folder that cannot be written.
    """
    # Imported here: seqeval loads scikit-learn (~0.7 s), which --help does not need.
    from seqeval.metrics.sequence_labeling import get_entities

    path = Path(opts.nlu_manifest)
    if opts.min_count < 1:
        raise InputError(f"--min-count must be at least 1, got {opts.min_count}")
    if opts.max_phrases < 0:
        raise InputError(f"--max-phrases must be 0 (no limit) or positive, got {opts.max_phrases}")
    _refuse_eval_file(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (run prepare-snips first)")
    check_writable_dir(opts.out_dir, "--out-dir")
    sups = load_lhotse_manifest(path, SupervisionSet)

    by_slot: dict[str, Counter] = {}
    by_intent: dict[str, Counter] = {}
    everything: Counter = Counter()
    n_spans = n_stray = 0
    for sup in sups:
        if marker := eval_split_marker(sup.id):
            raise InputError(
                f"{path}: utterance {sup.id}: the id marks a {marker!r} split; slot lexicons "
                "are built from training data only (dev/test must never feed a lexicon)"
            )
        intent, words, tags = _checked_label(path, sup)
        intent_counts = by_intent.setdefault(intent, Counter())
        n_stray += _stray_inside_tags(tags)
        for slot_type, start, end in get_entities(tags):
            phrase = " ".join(words[start : end + 1])
            by_slot.setdefault(slot_type, Counter())[phrase] += 1
            intent_counts[phrase] += 1
            everything[phrase] += 1
            n_spans += 1
    if n_stray:
        logging.info("%d stray I- tags, each read as the start of a span", n_stray)

    lists = {"global": everything}
    lists.update({f"slot-{t}": c for t, c in sorted(by_slot.items())})
    lists.update({f"intent-{i}": c for i, c in sorted(by_intent.items())})
    stale = sorted(
        p.name
        for pattern in ("slot-*.txt", "intent-*.txt")
        for p in Path(opts.out_dir).glob(pattern)
        if p.stem not in lists
    )
    if stale:
        logging.warning(
            "%s: %d list files of an earlier run are not in this run's lexicons.json "
            "(left in place): %s",
            opts.out_dir,
            len(stale),
            " ".join(stale),
        )

    index: dict = {}
    for name, counts in lists.items():
        ranked = _ranked(counts, opts.min_count, opts.max_phrases)
        with atomic_write(Path(opts.out_dir) / f"{name}.txt") as f:
            f.write("".join(f"{p}\t{c}\n" for p, c in ranked))
        index[name] = {
            "file": f"{name}.txt",
            "phrases": len(ranked),
            "total_count": sum(c for _, c in ranked),
            "distinct_before_limits": len(counts),
        }
        if not ranked:
            logging.warning("%s: no phrase left after --min-count %d", name, opts.min_count)
    summary = {
        "source": {
            "manifest": str(path),
            "sha256": file_sha256(path),
            "utterances": len(sups),
            "spans": n_spans,
            "stray_inside_tags": n_stray,
        },
        "min_count": opts.min_count,
        "max_phrases": opts.max_phrases,
        "lists": index,
    }
    with atomic_write(Path(opts.out_dir) / "lexicons.json") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    logging.info(
        "%s: %d utterances, %d spans -> %d slot-type and %d intent lists, %d distinct phrases "
        "(in %s)",
        path,
        len(sups),
        n_spans,
        len(by_slot),
        len(by_intent),
        index["global"]["phrases"],
        opts.out_dir,
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    run_cli("extract-slot-lexicon", SlotLexiconOptions, extract_slot_lexicons, __doc__, argv)


if __name__ == "__main__":
    main()
