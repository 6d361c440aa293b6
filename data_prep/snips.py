"""SNIPS NLU benchmark -> normalised, BIO-labelled Lhotse manifests with synthesized audio.

The corpus (Coucke et al., 2018, "Snips Voice Platform", arXiv:1805.10190) as released with
utterance ids by aws-samples/aws-lex-noisy-spoken-language-understanding: tab-separated
``u_id, utterance, slot-labels, intent`` files ``train``, ``valid`` (our *dev*) and ``test``.
Labels are ``O`` or ``Intent/slot`` per whitespace token; consecutive equal labels form one span.

What this does, per split:

1. reads the TSV, normalises each token to spoken-form words (:mod:`data_prep.normalize`) and
   turns the span labels into one BIO tag per word (a token that becomes several words gives
   B- then I-);
2. skips, with a warning naming the file, line and id, every row that cannot be used: empty
   utterance, token/label count mismatch, malformed label, unknown intent, nothing left
   after normalisation. **Repair rule** (documented, applied before the check): the upstream
   files were split on single spaces, so a double space yields an empty token that carries a
   label; empty tokens and their labels are dropped. This repairs the 12 known mismatched rows
   (11 train, 1 test);
3. renders audio from the *normalised* text with a TTS backend (voice sets disjoint per split),
   or takes upstream Amazon Polly audio where a local copy is given (``--polly-dir``);
4. writes validated manifests (see OUTPUTS below).

OUTPUTS (in ``--output-dir``, default ``data/manifests``):
    snips_recordings_{train,dev,test}.jsonl.gz   audio the ASR uses (train: the ASR subset)
    snips_supervisions_{train,dev,test}.jsonl.gz text + custom {"intent", "slots"}
    snips_recordings_train_all.jsonl.gz          audio of every usable train row
    snips_nlu_{train,dev,test}.jsonl.gz          every usable row (train: all of it, for LMs)
    snips_intents.txt, snips_slot_tags.txt       label inventories

``--asr-train-subset N`` picks the N train utterances the RNN-T is trained on (seeded, nested:
a larger N contains a smaller one), the benchmark's limited-paired-data setting. Every train
row is rendered anyway (it is cheap: about 70 utterances/s) so that the full NLU set is a valid
Lhotse SupervisionSet with real durations, and N can be raised without re-rendering.

Usage:
    prepare-snips --corpus-dir download/snips --output-dir data/manifests \\
        --audio-dir data/audio --asr-train-subset 6000
"""

from __future__ import annotations

import csv
import logging
import random
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions

from common.cli import run_cli
from common.io import InputError, atomic_write
from data_prep.normalize import normalize_tokens
from data_prep.tts import TTSJob, get_tts_backend, sample_voice, split_voices, synthesize

SNIPS_INTENTS = (
    "AddToPlaylist",
    "BookRestaurant",
    "GetWeather",
    "PlayMusic",
    "RateBook",
    "SearchCreativeWork",
    "SearchScreeningEvent",
)
# our split name -> upstream file name
SPLITS = {"train": "train", "dev": "valid", "test": "test"}
UPSTREAM_URL = (
    "https://raw.githubusercontent.com/aws-samples/"
    "aws-lex-noisy-spoken-language-understanding/master/data/nlu_annotation/{name}"
)
# Where the project keeps read-only copies when there is no network (../shared next to the repo).
SHARED_SNIPS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "snips"
_LABEL_RE = re.compile(r"^O$|^[A-Za-z]+/[A-Za-z_]+$")


@dataclass
class NluRow:
    """One usable SNIPS row after normalisation."""

    id: str
    raw: str
    words: list[str]
    slots: list[str]  # BIO, one per word
    intent: str


@dataclass
class SplitReport:
    """What happened to the rows of one TSV file."""

    path: str
    total: int = 0
    repaired: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (line, id, reason)

    def log(self) -> None:
        logging.info(
            "%s: %d rows, %d usable, %d repaired (empty tokens dropped), %d skipped",
            self.path,
            self.total,
            self.total - len(self.skipped),
            len(self.repaired),
            len(self.skipped),
        )
        for line, uid, reason in self.skipped:
            logging.warning("%s:%d: skipped %s: %s", self.path, line, uid, reason)


def to_bio(token_words: list[list[str]], labels: list[str]) -> list[str]:
    """Span labels per token -> BIO tags per word.

    Args:
        token_words: the normalised words of each token (possibly empty lists).
        labels: one ``O`` / ``Intent/slot`` label per token; runs of equal labels are a span.

    Returns:
        One tag per word: ``B-slot`` on the first word of a span, ``I-slot`` on the others.
    """
    assert len(token_words) == len(labels)
    tags: list[str] = []
    prev_label = "O"
    span_started = False
    for words, label in zip(token_words, labels, strict=True):
        if label != prev_label:
            span_started = False
        prev_label = label
        slot = label.split("/", 1)[1] if label != "O" else None
        for w in words:
            del w
            if slot is None:
                tags.append("O")
            else:
                tags.append(f"{'I' if span_started else 'B'}-{slot}")
                span_started = True
    return tags


def parse_row(row: list[str], known_intents: frozenset[str]) -> tuple[NluRow, bool]:
    """Validate and normalise one TSV row.

    Returns:
        ``(row, repaired)``.

    Raises:
        ValueError: the reason the row is unusable.
    """
    if len(row) != 4:
        raise ValueError(f"expected 4 tab-separated fields, got {len(row)}")
    uid, utterance, label_str, intent = (x.strip("\r\n") for x in row)
    if not uid:
        raise ValueError("empty utterance id")
    if not utterance.strip():
        raise ValueError("empty utterance")
    if intent not in known_intents:
        raise ValueError(f"unknown intent {intent!r} (known: {', '.join(sorted(known_intents))})")
    tokens, labels = utterance.split(" "), label_str.split(" ")
    repaired = False
    if len(tokens) == len(labels) and "" in tokens:
        kept = [(t, lab) for t, lab in zip(tokens, labels, strict=True) if t != ""]
        tokens, labels = [t for t, _ in kept], [lab for _, lab in kept]
        repaired = True
    if len(tokens) != len(labels):
        raise ValueError(f"{len(tokens)} tokens but {len(labels)} slot labels")
    for lab in labels:
        if not _LABEL_RE.match(lab):
            raise ValueError(f"malformed slot label {lab!r}")
    token_words = normalize_tokens(tokens)
    words = [w for ws in token_words for w in ws]
    if not words:
        raise ValueError("nothing left after text normalisation")
    return NluRow(uid, utterance, words, to_bio(token_words, labels), intent), repaired


def read_snips_tsv(
    path: Path, known_intents=frozenset(SNIPS_INTENTS)
) -> tuple[list[NluRow], SplitReport]:
    """Read one SNIPS annotation file; unusable rows are reported, not returned."""
    report = SplitReport(str(path))
    rows: list[NluRow] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != [
            "u_id",
            "utterance",
            "slot-labels",
            "intent",
        ]:
            raise InputError(
                f"{path}:1: not a SNIPS annotation file (expected header "
                f"'u_id utterance slot-labels intent', got {header!r})"
            )
        for lineno, raw in enumerate(reader, start=2):
            if not any(x.strip() for x in raw):
                continue
            report.total += 1
            uid = raw[0] if raw else "?"
            try:
                if uid in seen:
                    raise ValueError("duplicate utterance id")
                row, repaired = parse_row(raw, known_intents)
            except ValueError as e:
                report.skipped.append((lineno, uid, str(e)))
                continue
            seen.add(uid)
            if repaired:
                report.repaired.append(uid)
            rows.append(row)
    return rows, report


def _find_split_file(corpus_dir: Path, name: str) -> Path | None:
    for cand in (corpus_dir / name, corpus_dir / f"{name}.tsv"):
        if cand.is_file():
            return cand
    return None


def download_snips(target_dir: Path, timeout: float = 20.0) -> Path:
    """Fetch the three annotation files from upstream into ``target_dir`` (skips existing ones).

    Falls back to the project's read-only copy in ``../shared/data/snips`` when the network is
    unreachable.

    Returns:
        The directory that holds ``train``/``valid``/``test``.
    """
    target_dir = Path(target_dir)
    if all(_find_split_file(target_dir, n) for n in SPLITS.values()):
        return target_dir
    try:
        for name in SPLITS.values():
            if _find_split_file(target_dir, name):
                continue
            url = UPSTREAM_URL.format(name=name)
            logging.info("Downloading %s", url)
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
            with atomic_write(target_dir / f"{name}.tsv", "wb") as f:
                f.write(data)
        return target_dir
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        if all(_find_split_file(SHARED_SNIPS_DIR, n) for n in SPLITS.values()):
            logging.warning("Download failed (%s); using the local copy in %s", e, SHARED_SNIPS_DIR)
            return SHARED_SNIPS_DIR
        raise InputError(
            f"Cannot download the SNIPS annotations ({e}) and no local copy was found in "
            f"{SHARED_SNIPS_DIR}. Download data/nlu_annotation/{{train,valid,test}} from "
            "github.com/aws-samples/aws-lex-noisy-spoken-language-understanding and pass "
            "their folder with --corpus-dir."
        ) from e


def _polly_index(polly_dir: Path | None) -> dict[str, dict[str, Path]]:
    """``utt_id -> {voice: path}`` for upstream Polly audio (``audio_<voice>/snips/<id>.mp3``)."""
    index: dict[str, dict[str, Path]] = {}
    if polly_dir is None:
        return index
    if not polly_dir.is_dir():
        raise InputError(f"--polly-dir {polly_dir}: no such directory")
    for p in sorted(polly_dir.glob("audio_*/snips/*")):
        if p.suffix.lower() in (".mp3", ".wav", ".flac"):
            index.setdefault(p.stem, {})[p.parent.parent.name[len("audio_") :]] = p
    logging.info("Polly audio: %d utterances found in %s", len(index), polly_dir)
    return index


@dataclass
class PrepareSnipsConfig:
    """Options of :func:`prepare_snips`."""

    corpus_dir: Path | None = field(
        default=None,
        metadata={
            "help": "folder with train/valid/test(.tsv); unset = download upstream (or the "
            "local ../shared copy when offline) into --download-dir"
        },
    )
    download_dir: Path = field(default=Path("download/snips"), metadata={"help": "download target"})
    output_dir: Path = field(default=Path("data/manifests"), metadata={"help": "manifest folder"})
    audio_dir: Path = field(default=Path("data/audio"), metadata={"help": "synthesized WAVs"})
    polly_dir: Path | None = field(
        default=None,
        metadata={
            "help": "local copy of upstream audio_slu/ (audio_<voice>/snips/<id>.mp3); used "
            "where present, synthesized elsewhere"
        },
    )
    asr_train_subset: int = field(
        default=6000, metadata={"help": "how many train utterances the ASR trains on (<=0: all)"}
    )
    max_per_split: int = field(
        default=0,
        metadata={"help": "keep a seeded random N usable rows of each split (tiny runs; 0 = all)"},
    )
    tts_backend: str = field(default="espeak-ng", metadata={"help": "TTS backend"})
    seed: int = field(default=13, metadata={"help": "seed for voices, rates, pitches, subset"})
    num_jobs: int = field(default=2, metadata={"help": "TTS processes"})
    strict: bool = field(
        default=False, metadata={"help": "fail on the first unusable row instead of skipping it"}
    )


def _save_manifest(manifest, path: Path) -> None:
    """Write a Lhotse manifest atomically (temp name keeps the suffix Lhotse keys on)."""
    tmp = path.with_name(f".tmp.{path.name}")
    manifest.to_file(tmp)
    tmp.replace(path)


def _recording(utt_id: str, path: Path) -> Recording:
    try:
        rec = Recording.from_file(path, recording_id=utt_id)
    except Exception as e:
        raise InputError(
            f"{path}: cannot read audio of utterance {utt_id}: {e} (delete the "
            "file to synthesize it again)"
        ) from e
    if rec.duration <= 0:
        raise InputError(f"{path}: audio of utterance {utt_id} is empty")
    return rec


def prepare_snips(cfg: PrepareSnipsConfig) -> dict[str, dict[str, Path]]:
    """Run the whole preparation (see module docstring). Returns the written paths per split."""
    t0 = time.time()
    corpus_dir = Path(cfg.corpus_dir) if cfg.corpus_dir else download_snips(cfg.download_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"--corpus-dir {corpus_dir}: no such directory")
    rows_by_split: dict[str, list[NluRow]] = {}
    for split, name in SPLITS.items():
        path = _find_split_file(corpus_dir, name)
        if path is None:
            raise InputError(f"{corpus_dir}: missing SNIPS file '{name}' (or '{name}.tsv')")
        rows, report = read_snips_tsv(path)
        report.log()
        if cfg.strict and report.skipped:
            line, uid, reason = report.skipped[0]
            raise InputError(f"{path}:{line}: {uid}: {reason}")
        if 0 < cfg.max_per_split < len(rows):
            keep = set(random.Random(cfg.seed).sample([r.id for r in rows], cfg.max_per_split))
            rows = [r for r in rows if r.id in keep]
        if not rows:
            raise InputError(f"{path}: no usable rows")
        rows_by_split[split] = rows

    backend = get_tts_backend(cfg.tts_backend)
    voice_sets = dict(zip(SPLITS, split_voices(backend.voices(), cfg.seed), strict=True))
    polly = _polly_index(cfg.polly_dir)
    polly_voices = sorted({v for vs in polly.values() for v in vs})
    polly_sets = (
        dict(zip(SPLITS, split_voices(polly_voices, cfg.seed), strict=True))
        if len(polly_voices) >= 3
        else {}
    )

    out: dict[str, dict[str, Path]] = {}
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        jobs, audio_paths = [], {}
        for r in rows:
            have = polly.get(r.id, {})
            allowed = [v for v in sorted(have) if v in polly_sets.get(split, sorted(have))]
            if allowed:
                audio_paths[r.id] = have[random.Random(f"{cfg.seed}:{r.id}").choice(allowed)]
                continue
            wav = cfg.audio_dir / split / f"{r.id}.wav"
            jobs.append(
                TTSJob(
                    r.id, " ".join(r.words), wav, sample_voice(voice_sets[split], r.id, cfg.seed)
                )
            )
            audio_paths[r.id] = wav
        synthesize(jobs, backend, num_jobs=cfg.num_jobs, desc=f"TTS {split}")
        recordings = RecordingSet.from_recordings(_recording(r.id, audio_paths[r.id]) for r in rows)
        supervisions = SupervisionSet.from_segments(
            SupervisionSegment(
                id=r.id,
                recording_id=r.id,
                start=0.0,
                duration=recordings[r.id].duration,
                channel=0,
                text=" ".join(r.words),
                language="English",
                custom={"intent": r.intent, "slots": r.slots},
            )
            for r in rows
        )
        validate_recordings_and_supervisions(recordings, supervisions)
        paths = {"nlu": cfg.output_dir / f"snips_nlu_{split}.jsonl.gz"}
        asr_ids = [r.id for r in rows]
        if split == "train":
            paths["recordings_all"] = cfg.output_dir / "snips_recordings_train_all.jsonl.gz"
            _save_manifest(recordings, paths["recordings_all"])
            if 0 < cfg.asr_train_subset < len(rows):
                shuffled = sorted(asr_ids)
                random.Random(cfg.seed).shuffle(shuffled)
                keep = set(shuffled[: cfg.asr_train_subset])
                asr_ids = [i for i in asr_ids if i in keep]
        ids = set(asr_ids)
        asr_rec = RecordingSet.from_recordings(r for r in recordings if r.id in ids)
        asr_sup = SupervisionSet.from_segments(s for s in supervisions if s.id in ids)
        paths["recordings"] = cfg.output_dir / f"snips_recordings_{split}.jsonl.gz"
        paths["supervisions"] = cfg.output_dir / f"snips_supervisions_{split}.jsonl.gz"
        _save_manifest(supervisions, paths["nlu"])
        _save_manifest(asr_rec, paths["recordings"])
        _save_manifest(asr_sup, paths["supervisions"])
        hours = sum(recordings[i].duration for i in asr_ids) / 3600
        logging.info(
            "%s: %d NLU rows, %d with ASR audio (%.2f h), %d voices",
            split,
            len(rows),
            len(asr_ids),
            hours,
            len(voice_sets[split]),
        )
        out[split] = paths

    intents = sorted({r.intent for rows in rows_by_split.values() for r in rows})
    tags = sorted({t for rows in rows_by_split.values() for r in rows for t in r.slots})
    with atomic_write(cfg.output_dir / "snips_intents.txt") as f:
        f.write("".join(f"{i}\n" for i in intents))
    with atomic_write(cfg.output_dir / "snips_slot_tags.txt") as f:
        f.write("".join(f"{t}\n" for t in tags))
    slot_counts = Counter(
        t[2:] for r in rows_by_split["train"] for t in r.slots if t.startswith("B-")
    )
    logging.info(
        "%d intents, %d BIO tags (%d slot types); prepared in %.1f s",
        len(intents),
        len(tags),
        len(slot_counts),
        time.time() - t0,
    )
    return out


def main(argv: list[str] | None = None) -> None:
    run_cli("prepare-snips", PrepareSnipsConfig, prepare_snips, __doc__, argv)


if __name__ == "__main__":
    main()
