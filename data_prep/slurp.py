"""SLURP -> normalised, BIO-labelled Lhotse manifests (one per recording) and NLU manifests.

The corpus (Bastianelli et al., 2020, "SLURP: A Spoken Language Understanding Resource
Package", EMNLP): text annotations in github.com/pswietojanski/slurp
(``dataset/slurp/{train,train_synthetic,devel,test}.jsonl`` and ``metadata.json``), audio as
two archives of its Zenodo release (record 4274930): ``slurp_real.tar.gz`` (train, devel,
test) and ``slurp_synth.tar.gz`` (train_synthetic), FLAC, unpacked by the repository's
``scripts/download_audio.sh`` layout into ``audio/slurp_real/`` and ``audio/slurp_synth/``.

What this does:

1. reads the JSONL of every requested split (:mod:`data_prep.slurp_jsonl`): the sentence is
   normalised with the SNIPS normaliser, the ``[type : words]`` spans of
   ``sentence_annotation`` become one BIO tag per normalised word, the intent is
   ``scenario_action``. Rows that cannot be used (malformed annotation, entity words that do not
   match the sentence, a malformed scenario/action/intent, a duplicate slurp_id, more than
   ``--max-words`` words, ...) are skipped with a warning naming file, line and slurp_id, as
   prepare-snips does; ``--strict`` fails on the first one instead. A line that is not a JSON
   object stops the run naming file and line;
2. writes one text-only NLU supervision per usable sentence and the label inventories;
3. makes one Lhotse ``Recording`` + ``SupervisionSegment`` per recording file of each kept
   sentence (a sentence has several: speakers, headset and far-field microphones), the
   duration read from the FLAC header (``soundfile.info``). A recording file named a second
   time in one split (under another slurp_id) is skipped with a warning (``--strict``: fails).
   A missing or unreadable FLAC stops the run naming the file, the JSONL file:line and the
   slurp_id (``--skip-bad-audio true`` skips and lists them instead).

Every input (all JSONL files, every audio header) is checked before the first manifest is
written, so a failed run leaves the manifests of an earlier run as they were. If the audio
folder is missing, the NLU manifests and inventories are written and the run stops (exit
status 2) saying which archive to download and where to unpack it (``--text-only true``
prepares the text alone and succeeds).

OUTPUTS (in ``--output-dir``; splits ``train``, ``dev`` (upstream ``devel``), ``test`` and, with
``--include-synthetic true``, ``train_synthetic``):
    slurp_recordings_{split}.jsonl.gz     one recording per audio file (id = supervision id)
    slurp_supervisions_{split}.jsonl.gz   text + custom {"intent", "scenario", "action", "slots",
                                          "slurp_id", "file", "mic", "status", "wer", "ent_wer"},
                                          speaker = metadata.json's usrid when known
    slurp_nlu_{split}.jsonl.gz            one text-only supervision per sentence (no recording
                                          with its id; duration a 1 s placeholder), custom
                                          {"intent", "scenario", "action", "slots", "slurp_id"}
    slurp_intents.txt, slurp_slot_tags.txt  label inventories (sorted; tags incl. O)

Ids: ``slurp-<split>-<slurp_id>`` for a sentence, ``slurp-<split>-<slurp_id>-<file stem>`` for a
recording (e.g. ``slurp-dev-13804-audio-1490359569-headset``). ``mic`` is ``headset`` (the
file name has ``-headset``), ``farfield`` (the other real recordings) or ``synthetic``;
``--mic`` keeps the real recordings of one kind (synthetic ones are always kept).

Usage:
    prepare-slurp --corpus-dir download/slurp --output-dir data/manifests \\
        [--splits train devel test] [--include-synthetic false] [--mic all]
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions

from common.cli import run_cli
from common.io import NLU_DURATION, InputError, atomic_write, open_text, write_manifest
from data_prep.checks import AudioProblem, check_writable_dir, read_audio_header
from data_prep.slurp_jsonl import SlurpRow, read_slurp_jsonl

#: upstream file name -> our split name
SPLITS = {"train": "train", "devel": "dev", "test": "test", "train_synthetic": "train_synthetic"}
#: our names accepted in --splits too
_SPLIT_ALIASES = {"dev": "devel"}
SYNTHETIC = "train_synthetic"
MICS = ("all", "headset", "farfield")
#: upstream audio folder of each split and the release archive that holds it
AUDIO_FOLDERS = {"real": "slurp_real", "synthetic": "slurp_synth"}
AUDIO_URL = "https://zenodo.org/record/4274930"


@dataclass
class PrepareSlurpConfig:
    """Options of :func:`prepare_slurp`."""

    corpus_dir: Path | None = field(
        default=None,
        metadata={
            "help": "the SLURP repository clone: dataset/slurp/*.jsonl (or the .jsonl files "
            "directly in it) and audio/slurp_real, audio/slurp_synth (or slurp_real, "
            "slurp_synth directly in it); required"
        },
    )
    audio_dir: Path | None = field(
        default=None,
        metadata={
            "help": "folder holding slurp_real/ and slurp_synth/ (unset: <corpus-dir>/audio, "
            "else <corpus-dir>)"
        },
    )
    output_dir: Path = field(default=Path("data/manifests"), metadata={"help": "manifest folder"})
    splits: tuple[str, ...] = field(
        default=("train", "devel", "test"),
        metadata={"help": "upstream splits to prepare (devel is written as dev; dev accepted)"},
    )
    include_synthetic: bool = field(
        default=False,
        metadata={"help": "also prepare train_synthetic (audio in slurp_synth)"},
    )
    mic: str = field(
        default="all",
        metadata={"help": "real recordings to keep: headset, farfield or all"},
    )
    text_only: bool = field(
        default=False,
        metadata={"help": "write the NLU manifests and inventories only (no audio needed)"},
    )
    max_per_split: int = field(
        default=0,
        metadata={"help": "keep a seeded random N usable sentences per split (0 = all)"},
    )
    seed: int = field(default=13, metadata={"help": "seed of --max-per-split"})
    max_words: int = field(
        default=100,
        metadata={
            "help": "skip (with --strict: fail on) a sentence with more words than this "
            "after normalisation; 0 = no limit"
        },
    )
    strict: bool = field(
        default=False,
        metadata={"help": "fail on the first unusable row or repeated recording file"},
    )
    skip_bad_audio: bool = field(
        default=False,
        metadata={"help": "skip (and list) recordings whose FLAC is missing or unreadable"},
    )


def _find_file(corpus_dir: Path, name: str) -> Path | None:
    for cand in (corpus_dir / "dataset" / "slurp" / name, corpus_dir / name):
        if cand.is_file():
            return cand
    return None


def _requested_splits(cfg: PrepareSlurpConfig) -> list[str]:
    """Upstream split names, in order, without repeats."""
    out: list[str] = []
    for s in list(cfg.splits) + ([SYNTHETIC] if cfg.include_synthetic else []):
        s = _SPLIT_ALIASES.get(s, s)
        if s not in SPLITS:
            raise InputError(
                f"--splits: unknown SLURP split {s!r} (known: {', '.join(SPLITS)}; "
                "train_synthetic also via --include-synthetic true)"
            )
        if s not in out:
            out.append(s)
    if not out:
        raise InputError("--splits: no split given")
    return out


def _read_splits(corpus_dir: Path, cfg: PrepareSlurpConfig) -> dict[str, tuple[Path, list]]:
    """Our split name -> (JSONL path, usable rows); every file is read before anything is written."""
    out: dict[str, tuple[Path, list[SlurpRow]]] = {}
    for upstream in _requested_splits(cfg):
        path = _find_file(corpus_dir, f"{upstream}.jsonl")
        if path is None:
            raise InputError(
                f"{corpus_dir}: missing SLURP file dataset/slurp/{upstream}.jsonl "
                "(clone github.com/pswietojanski/slurp and pass its folder with --corpus-dir)"
            )
        rows, report = read_slurp_jsonl(path, max_words=cfg.max_words)
        report.log()
        if cfg.strict and report.skipped:
            line, sid, reason = report.skipped[0]
            raise InputError(f"{path}:{line}: slurp_id {sid}: {reason}")
        if 0 < cfg.max_per_split < len(rows):
            ids = [r.slurp_id for r in rows]
            keep = set(random.Random(cfg.seed).sample(ids, cfg.max_per_split))
            rows = [r for r in rows if r.slurp_id in keep]
        if not rows:
            raise InputError(
                f"{path}: no usable rows ({report.total} rows, {len(report.skipped)} skipped)"
            )
        out[SPLITS[upstream]] = (path, rows)
    return out


def _read_speakers(corpus_dir: Path) -> dict[tuple[int, str], str]:
    """``(slurp_id, file) -> usrid`` from ``metadata.json`` (empty if the file is absent)."""
    path = _find_file(corpus_dir, "metadata.json")
    if path is None:
        logging.info("%s: no metadata.json: supervisions get no speaker", corpus_dir)
        return {}
    with open_text(path) as f:
        text = f.read()
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object of slurp_id -> entry")
    speakers = {}
    for sid, entry in meta.items():
        recs = entry.get("recordings") if isinstance(entry, dict) else None
        if not isinstance(recs, dict) or not str(sid).isdigit():
            continue
        for file, info in recs.items():
            usrid = info.get("usrid") if isinstance(info, dict) else None
            if isinstance(usrid, str) and usrid:
                speakers[(int(sid), file)] = usrid
    logging.info("%s: speakers of %d recordings", path, len(speakers))
    return speakers


def _audio_root(cfg: PrepareSlurpConfig, corpus_dir: Path) -> Path:
    if cfg.audio_dir is not None:
        return Path(cfg.audio_dir)
    for cand in (corpus_dir / "audio", corpus_dir):
        if any((cand / sub).is_dir() for sub in AUDIO_FOLDERS.values()):
            return cand
    return corpus_dir / "audio"


def _audio_folder(split: str) -> str:
    return AUDIO_FOLDERS["synthetic" if split == SYNTHETIC else "real"]


def _mic(split: str, stem: str) -> str:
    if split == SYNTHETIC:
        return "synthetic"
    return "headset" if "-headset" in stem else "farfield"


def _missing_audio_message(root: Path, missing: list[str], cfg: PrepareSlurpConfig) -> str:
    archives = " and ".join(f"{sub}.tar.gz" for sub in missing)
    folders = ", ".join(str(root / sub) for sub in missing)
    return (
        f"no SLURP audio: {folders} not found. Download {archives} from the SLURP release "
        f"({AUDIO_URL}; scripts/download_audio.sh of github.com/pswietojanski/slurp) and "
        f"unpack it in {root}/ (or pass --audio-dir). The NLU manifests were written to "
        f"{cfg.output_dir}; --text-only true prepares the text alone"
    )


def _fail_on(problems: list[str], what: str, shown: int = 20) -> None:
    """Log every problem (the first ``shown``) and raise one error naming the first."""
    if not problems:
        return
    for p in problems[:shown]:
        logging.error("%s", p)
    more = f" (and {len(problems) - 1} more {what}, listed above)" if len(problems) > 1 else ""
    raise InputError(problems[0] + more)


@dataclass
class _SplitAudio:
    recordings: list[Recording] = field(default_factory=list)
    supervisions: list[SupervisionSegment] = field(default_factory=list)
    mics: Counter = field(default_factory=Counter)
    left_out: int = 0  # by --mic
    repeated: int = 0  # a file named twice in the split
    bad: int = 0  # skipped by --skip-bad-audio


def _build_audio(
    split: str,
    path: Path,
    rows: list[SlurpRow],
    root: Path,
    speakers: dict[tuple[int, str], str],
    cfg: PrepareSlurpConfig,
    problems: list[str],
) -> _SplitAudio:
    """The recordings and supervisions of one split; audio problems are appended to ``problems``."""
    out = _SplitAudio()
    folder = root / _audio_folder(split)
    seen: dict[str, tuple[int, int]] = {}  # file -> (line, slurp_id)
    for row in rows:
        for entry in row.recordings:
            file = entry["file"]
            stem = file[: -len(".flac")]
            mic = _mic(split, stem)
            where = f"{path}:{row.line}: slurp_id {row.slurp_id}"
            if file in seen:
                line, sid = seen[file]
                reason = f"recording {file} already used by slurp_id {sid} (line {line})"
                if cfg.strict:
                    raise InputError(f"{where}: {reason}")
                logging.warning("%s: skipped %s", where, reason)
                out.repeated += 1
                continue
            seen[file] = (row.line, row.slurp_id)
            if cfg.mic != "all" and mic != "synthetic" and mic != cfg.mic:
                out.left_out += 1
                continue
            audio = folder / file
            try:
                hdr = read_audio_header(audio)
            except AudioProblem as e:
                msg = (
                    f"{audio}: cannot read audio of slurp_id {row.slurp_id} "
                    f"({path}:{row.line}): {e}"
                )
                if cfg.skip_bad_audio:
                    logging.warning("skipped: %s", msg)
                    out.bad += 1
                else:
                    problems.append(msg)
                continue
            rid = f"slurp-{split}-{row.slurp_id}-{stem}"
            rec = Recording(
                id=rid,
                sources=[
                    AudioSource(
                        type="file", channels=list(range(hdr.num_channels)), source=str(audio)
                    )
                ],
                sampling_rate=hdr.sampling_rate,
                num_samples=hdr.num_frames,
                duration=hdr.num_frames / hdr.sampling_rate,
            )
            out.recordings.append(rec)
            out.supervisions.append(
                SupervisionSegment(
                    id=rid,
                    recording_id=rid,
                    start=0.0,
                    duration=rec.duration,
                    channel=0,
                    text=" ".join(row.words),
                    language="English",
                    speaker=speakers.get((row.slurp_id, file)),
                    custom={
                        **_nlu_custom(row),
                        "file": file,
                        "mic": mic,
                        "status": entry.get("status"),
                        "wer": entry.get("wer"),
                        "ent_wer": entry.get("ent_wer"),
                    },
                )
            )
            out.mics[mic] += 1
    return out


def _nlu_custom(row: SlurpRow) -> dict:
    return {
        "intent": row.intent,
        "scenario": row.scenario,
        "action": row.action,
        "slots": row.slots,
        "slurp_id": row.slurp_id,
    }


def _nlu_set(split: str, rows: list[SlurpRow]) -> SupervisionSet:
    return SupervisionSet.from_segments(
        SupervisionSegment(
            id=f"slurp-{split}-{r.slurp_id}",
            recording_id=f"slurp-{split}-{r.slurp_id}",
            start=0.0,
            duration=NLU_DURATION,
            channel=0,
            text=" ".join(r.words),
            language="English",
            custom=_nlu_custom(r),
        )
        for r in rows
    )


def _audio_manifests(
    splits: dict[str, tuple[Path, list[SlurpRow]]],
    root: Path,
    corpus_dir: Path,
    cfg: PrepareSlurpConfig,
) -> dict[str, tuple[RecordingSet, SupervisionSet]]:
    """Every split's audio manifests, built and validated (nothing is written here)."""
    speakers = _read_speakers(corpus_dir)
    problems: list[str] = []
    built = {
        split: _build_audio(split, path, rows, root, speakers, cfg, problems)
        for split, (path, rows) in splits.items()
    }
    _fail_on(problems, "unusable audio files")
    files_by_split = {
        split: {s.custom["file"] for s in a.supervisions} for split, a in built.items()
    }
    names = list(files_by_split)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = files_by_split[a] & files_by_split[b]
            if shared:
                logging.warning(
                    "%d recording files are in both %s and %s (e.g. %s)",
                    len(shared),
                    a,
                    b,
                    sorted(shared)[0],
                )
    out = {}
    for split, a in built.items():
        if not a.recordings:
            raise InputError(
                f"{splits[split][0]}: no recordings left ({a.left_out} left out by --mic "
                f"{cfg.mic}, {a.bad} unreadable, {a.repeated} repeated)"
            )
        recordings = RecordingSet.from_recordings(a.recordings)
        supervisions = SupervisionSet.from_segments(a.supervisions)
        try:
            validate_recordings_and_supervisions(recordings, supervisions)
        except AssertionError as e:
            raise InputError(f"{split}: Lhotse validation failed: {e}") from None
        hours = sum(r.duration for r in a.recordings) / 3600
        logging.info(
            "%s: %d recordings (%s), %.2f h; %d left out by --mic %s, %d repeated files "
            "skipped, %d unreadable skipped",
            split,
            len(a.recordings),
            ", ".join(f"{n} {m}" for m, n in sorted(a.mics.items())),
            hours,
            a.left_out,
            cfg.mic,
            a.repeated,
            a.bad,
        )
        out[split] = (recordings, supervisions)
    return out


def prepare_slurp(cfg: PrepareSlurpConfig) -> dict[str, dict[str, Path]]:
    """Run the whole preparation (see module docstring). Returns the written paths per split."""
    t0 = time.time()
    if cfg.corpus_dir is None:
        raise InputError(
            "--corpus-dir is required (a clone of github.com/pswietojanski/slurp, with the "
            "audio unpacked in its audio/ folder)"
        )
    corpus_dir = Path(cfg.corpus_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"--corpus-dir {corpus_dir}: no such directory")
    if cfg.mic not in MICS:
        raise InputError(f"--mic {cfg.mic!r}: expected one of {', '.join(MICS)}")
    splits = _read_splits(corpus_dir, cfg)
    check_writable_dir(cfg.output_dir, "--output-dir")

    missing: list[str] = []  # audio folders that are not there
    audio: dict[str, tuple[RecordingSet, SupervisionSet]] = {}
    root = _audio_root(cfg, corpus_dir)
    if not cfg.text_only:
        needed = sorted({_audio_folder(s) for s in splits}, key=list(AUDIO_FOLDERS.values()).index)
        missing = [sub for sub in needed if not (root / sub).is_dir()]
        if not missing:
            audio = _audio_manifests(splits, root, corpus_dir, cfg)

    out: dict[str, dict[str, Path]] = {}
    for split, (_, rows) in splits.items():
        out[split] = {"nlu": cfg.output_dir / f"slurp_nlu_{split}.jsonl.gz"}
        write_manifest(out[split]["nlu"], _nlu_set(split, rows))
    all_rows = [r for _, rows in splits.values() for r in rows]
    intents = sorted({r.intent for r in all_rows})
    tags = sorted({t for r in all_rows for t in r.slots})
    with atomic_write(cfg.output_dir / "slurp_intents.txt") as f:
        f.write("".join(f"{i}\n" for i in intents))
    with atomic_write(cfg.output_dir / "slurp_slot_tags.txt") as f:
        f.write("".join(f"{t}\n" for t in tags))
    logging.info(
        "%d sentences, %d intents, %d BIO tags written",
        len(all_rows),
        len(intents),
        len(tags),
    )
    if missing:
        raise InputError(_missing_audio_message(root, missing, cfg))

    for split, (recordings, supervisions) in audio.items():
        out[split]["recordings"] = cfg.output_dir / f"slurp_recordings_{split}.jsonl.gz"
        out[split]["supervisions"] = cfg.output_dir / f"slurp_supervisions_{split}.jsonl.gz"
        write_manifest(out[split]["recordings"], recordings)
        write_manifest(out[split]["supervisions"], supervisions)
    logging.info("prepared in %.1f s", time.time() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    run_cli("prepare-slurp", PrepareSlurpConfig, prepare_slurp, __doc__, argv)


if __name__ == "__main__":
    main()
