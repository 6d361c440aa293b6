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
   after normalisation, more than ``--max-words`` words after normalisation (a runaway row
   would become minutes of audio); ``--strict`` fails on the first such row instead.
   **Repair rule** (documented, applied before the check): the upstream files were split on
   single spaces, so a double space yields an empty token that carries a label; empty tokens
   and their labels are dropped. This repairs the 12 known mismatched rows (11 train, 1 test);
3. renders audio from the *normalised* text with a TTS backend (voice sets disjoint per split),
   or takes upstream Amazon Polly audio where a local copy is given (``--polly-dir``);
4. writes validated manifests (see OUTPUTS below).

TTS engines and voices per split: without ``--tts-plan`` every split is rendered by
``--tts-backend`` (default espeak-ng), its voices split disjointly over train / dev / test.
``--tts-plan`` (:mod:`data_prep.tts_plan`) names the engines and voices of each split, e.g.
``train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng,flite:slt;test=espeak-ng,festival``, or a
``.toml`` file. With a plan:

* each supervision records its voice in ``custom["tts_engine"]`` and ``custom["tts_voice"]``
  (``polly`` and the Polly voice for upstream audio), so results can be broken down per engine;
* each WAV is named ``<split>/<utt id>.<engine>.<voice>.wav``, so a changed plan renders exactly
  the utterances whose voice changed (files of the old plan are left alone, unused);
* ``snips_tts_voices.json`` lists the plan and the voices of each split.

A plan may add the split ``test_unseen_engine``: the test sentences rendered by engines that
neither train nor dev uses (an extra evaluation set). Its utterance ids are the test ids with
``-unseen`` appended, so that ids stay unique over every recording of the corpus (test and this
set can be scored, or decoded, together); ``custom["source_id"]`` holds the test id, and the
intent and slots are the test utterance's. Without ``--tts-plan`` the output is byte-identical
to that of the code before plans existed.

Every input is checked for all three splits before any manifest is written, so a run that
fails (bad TSV, unreadable audio) leaves the manifests of an earlier run as they were. Audio
found from an earlier run (or in ``--polly-dir``) is checked before it is reused: readable,
16 kHz (synthesized WAVs), not empty, and holding as many samples as its header declares. A
file that fails is reported with its utterance id; delete it to synthesize it again. The TSV
files must be UTF-8 (a UTF-8 byte-order mark is accepted); an undecodable byte, a UTF-16
file or a malformed line stops the run naming file and line.

OUTPUTS (in ``--output-dir``, default ``data/manifests``):
    snips_recordings_{train,dev,test}.jsonl.gz   audio the ASR uses (train: the ASR subset)
    snips_supervisions_{train,dev,test}.jsonl.gz text + custom {"intent", "slots"}
    snips_recordings_train_all.jsonl.gz          audio of every usable train row (not written
                                                 with --render-nlu-only false)
    snips_nlu_{train,dev,test}.jsonl.gz          every usable row (train: all of it, for LMs)
    snips_intents.txt, snips_slot_tags.txt       label inventories
    snips_{recordings,supervisions,nlu}_test_unseen_engine.jsonl.gz   with that plan split
    snips_tts_voices.json                        with --tts-plan: the voices of each split
    snips_{recordings,supervisions}_train_renders.jsonl.gz   with --train-renders N > 1: the
                                                 other N - 1 renderings of each ASR train
                                                 utterance (ids <id>_r<k>, custom source_id)

``--asr-train-subset N`` picks the N train utterances the RNN-T is trained on (seeded, nested:
a larger N contains a smaller one), the benchmark's limited-paired-data setting. By default every
train row is rendered anyway, so that each supervision of the full NLU set has a real duration and
N can be raised without re-rendering. ``--render-nlu-only false`` renders the ASR subset alone
(the SNIPS default recipe: 6,000 of 13,084 rows, about half of this stage's TTS time): the
other train rows become text-only NLU supervisions in ``snips_nlu_train`` (no recording; duration
a 1 s placeholder, as SLURP's NLU rows: Lhotse requires > 0), ``snips_recordings_train_all`` is
not written, and the ASR subset's audio is the same files either way (voices are drawn per
utterance id). Validate such manifests with ``validate-manifests --text-only-nlu true``.

``--train-renders N`` (N > 1) renders each ASR train utterance N - 1 more times, by other
voices: rendering k (``<id>_r<k>``) is spoken by the engine k - 1 places after the first
rendering's in the train split's sorted engines (so with 2 engines and N = 2 each sentence is
heard once from each), with a voice, rate and pitch drawn from the seed and its id
(:func:`data_prep.tts_plan.sample_render_voice`). They form the split ``train_renders``, whose
features ``train-asr --render-cuts`` draws from per utterance and epoch, as it does the speed
copies: the paired *text* stays the ASR subset, only its sound varies.

Usage:
    prepare-snips --corpus-dir download/snips --output-dir data/manifests \\
        --audio-dir data/audio --asr-train-subset 6000
    prepare-snips ... --tts-plan "train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng,flite:slt;\\
        test=espeak-ng,flite:kal16;test_unseen_engine=festival"
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions
from lhotse.utils import resumable_download

from common.cli import run_cli
from common.io import NLU_DURATION, InputError, atomic_write, write_manifest
from common.speed import RENDER_SPLIT, render_id
from data_prep.checks import AudioProblem, check_writable_dir, read_audio_header
from data_prep.snips_tsv import SPLITS, NluRow, find_split_file, read_snips_tsv
from data_prep.tts import (
    SAMPLE_RATE,
    TTSBackend,
    TTSError,
    TTSJob,
    get_tts_backend,
    split_voices,
    synthesize,
)
from data_prep.tts_plan import (
    UNSEEN_SPLIT,
    TTSPlan,
    load_tts_plan,
    resolve_tts_plan,
    sample_plan_voice,
    sample_render_voice,
)

#: suffix of the ids of the test_unseen_engine split (unique over every recording)
UNSEEN_ID_SUFFIX = "-unseen"

UPSTREAM_URL = (
    "https://raw.githubusercontent.com/aws-samples/"
    "aws-lex-noisy-spoken-language-understanding/master/data/nlu_annotation/{name}"
)


def download_snips(
    target_dir: Path, local_copy_dir: Path | None = None, timeout: float = 20.0
) -> Path:
    """Fetch the three annotation files from upstream into ``target_dir`` (skips finished ones).

    Uses Lhotse's ``resumable_download`` into ``<name>.part`` and renames it when complete, so
    an interrupted download resumes and never leaves a half file under the final name.

    Args:
        target_dir: where the files go (``download/snips``).
        local_copy_dir: a read-only copy of the three files to use when the network is
            unreachable (the recipe passes the project's ``../shared/data/snips`` if present).
        timeout: seconds before an unreachable server counts as no network.

    Returns:
        The directory that holds ``train``/``valid``/``test``.
    """
    target_dir = Path(target_dir)
    if all(find_split_file(target_dir, n) for n in SPLITS.values()):
        return target_dir
    try:
        for name in SPLITS.values():
            if find_split_file(target_dir, name):
                continue
            url = UPSTREAM_URL.format(name=name)
            logging.info("Downloading %s", url)
            target_dir.mkdir(parents=True, exist_ok=True)
            part = target_dir / f"{name}.tsv.part"
            old_timeout = socket.getdefaulttimeout()
            socket.setdefaulttimeout(timeout)  # resumable_download takes no timeout
            try:
                resumable_download(url, part)
            finally:
                socket.setdefaulttimeout(old_timeout)
            os.replace(part, target_dir / f"{name}.tsv")
        return target_dir
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        if local_copy_dir is not None and all(
            find_split_file(Path(local_copy_dir), n) for n in SPLITS.values()
        ):
            logging.warning("Download failed (%s); using the local copy in %s", e, local_copy_dir)
            return Path(local_copy_dir)
        where = f" and {local_copy_dir} holds no copy" if local_copy_dir is not None else ""
        raise InputError(
            f"Cannot download the SNIPS annotations ({e}){where}. Download "
            "data/nlu_annotation/{train,valid,test} from "
            "github.com/aws-samples/aws-lex-noisy-spoken-language-understanding and pass "
            "their folder with --corpus-dir."
        ) from None


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
    local_copy_dir: Path | None = field(
        default=None,
        metadata={"help": "read-only copy of the three TSVs, used when the download fails"},
    )
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
    tts_backend: str = field(
        default="espeak-ng",
        metadata={"help": "TTS engine of every split when no --tts-plan is given"},
    )
    tts_plan: str | None = field(
        default=None,
        metadata={
            "help": "TTS engines/voices per split, 'train=espeak-ng,flite:awb;dev=...;test=..."
            "[;test_unseen_engine=festival]' (an engine alone = its voices shared out "
            "disjointly) or a .toml file; see data_prep/tts_plan.py"
        },
    )
    render_nlu_only: bool = field(
        default=True,
        metadata={
            "help": "also synthesize the train rows outside --asr-train-subset (false: they "
            "are text-only NLU supervisions with a 1 s placeholder duration, no audio)"
        },
    )
    train_renders: int = field(
        default=1,
        metadata={
            "help": "renderings of each ASR train utterance: N > 1 adds N - 1 more by other "
            "voices (the next engines of the train split first), written as the split "
            "train_renders (ids <id>_r<k>) for train-asr --render-cuts; 1 = off"
        },
    )
    seed: int = field(default=13, metadata={"help": "seed for voices, rates, pitches, subset"})
    num_jobs: int = field(default=2, metadata={"help": "TTS processes"})
    max_words: int = field(
        default=100,
        metadata={
            "help": "skip (with --strict: fail on) a row with more words than this after "
            "normalisation; 0 = no limit"
        },
    )
    strict: bool = field(
        default=False, metadata={"help": "fail on the first unusable row instead of skipping it"}
    )


def _reused_audio_problem(path: Path, synthesized: bool) -> str | None:
    """Why an existing audio file cannot be used (``None`` if it can)."""
    try:
        hdr = read_audio_header(path)
    except AudioProblem as e:
        return str(e)
    if synthesized and (hdr.sampling_rate, hdr.num_channels) != (SAMPLE_RATE, 1):
        return (
            f"{hdr.sampling_rate} Hz, {hdr.num_channels} channel(s); synthesized audio is "
            f"{SAMPLE_RATE} Hz mono"
        )
    return None


def _audio_error(uid: str, path: Path, reason: str, synthesized: bool) -> str:
    hint = " (delete the file to synthesize it again)" if synthesized else " (from --polly-dir)"
    return f"{path}: cannot read audio of utterance {uid}: {reason}{hint}"


def _fail_on(problems: list[str], what: str, shown: int = 20) -> None:
    """Log every problem (the first ``shown``) and raise one error naming the first."""
    if not problems:
        return
    for p in problems[:shown]:
        logging.error("%s", p)
    more = f" (and {len(problems) - 1} more {what}, listed above)" if len(problems) > 1 else ""
    raise InputError(problems[0] + more)


def _recording(utt_id: str, path: Path, synthesized: bool) -> Recording:
    reason = _reused_audio_problem(path, synthesized)
    if reason is None:
        try:
            rec = Recording.from_file(path, recording_id=utt_id)
        except Exception as e:  # Lhotse's audio backends raise many types
            reason = f"{type(e).__name__}: {e}"
        else:
            if rec.duration > 0:
                return rec
            reason = "no samples (empty audio)"
    raise InputError(_audio_error(utt_id, path, reason, synthesized))


@dataclass
class _SplitAudio:
    """Where each utterance's audio of one split comes from."""

    paths: dict[str, Path] = field(default_factory=dict)  # utterance id -> audio file
    jobs: list[TTSJob] = field(default_factory=list)  # the utterances we synthesize
    voices: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (engine, voice)

    @property
    def tts_paths(self) -> set[Path]:
        """The audio files we synthesize (the others come from --polly-dir)."""
        return {j.out_path for j in self.jobs}


def _read_splits(corpus_dir: Path, cfg: PrepareSnipsConfig) -> dict[str, list[NluRow]]:
    """The usable rows of every split (all TSV files are read before anything is written)."""
    rows_by_split: dict[str, list[NluRow]] = {}
    for split, name in SPLITS.items():
        path = find_split_file(corpus_dir, name)
        if path is None:
            raise InputError(f"{corpus_dir}: missing SNIPS file '{name}' (or '{name}.tsv')")
        rows, report = read_snips_tsv(path, max_words=cfg.max_words)
        report.log()
        if cfg.strict and report.skipped:
            line, uid, reason = report.skipped[0]
            raise InputError(f"{path}:{line}: {uid}: {reason}")
        if 0 < cfg.max_per_split < len(rows):
            keep = set(random.Random(cfg.seed).sample([r.id for r in rows], cfg.max_per_split))
            rows = [r for r in rows if r.id in keep]
        if not rows:
            raise InputError(
                f"{path}: no usable rows ({report.total} rows, {len(report.skipped)} skipped)"
            )
        rows_by_split[split] = rows
    return rows_by_split


def asr_train_ids(rows: list[NluRow], subset: int, seed: int) -> set[str]:
    """The ids of the train rows the ASR trains on: a seeded random ``subset`` of them (nested:
    a larger ``subset`` contains a smaller one), or all of them when ``subset`` is <= 0 or not
    smaller than the number of rows."""
    ids = [r.id for r in rows]
    if not 0 < subset < len(ids):
        return set(ids)
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    return set(shuffled[:subset])


def unseen_engine_rows(test_rows: list[NluRow]) -> list[NluRow]:
    """The rows of the ``test_unseen_engine`` split: test's, with ids made unique."""
    return [dataclasses.replace(r, id=r.id + UNSEEN_ID_SUFFIX) for r in test_rows]


def _tts_voice_sets(
    cfg: PrepareSnipsConfig,
) -> tuple[TTSPlan | None, dict[str, TTSBackend], dict[str, dict[str, list[str]]]]:
    """(the plan or ``None``, the backends by engine, ``split -> engine -> voices``)."""
    if cfg.tts_plan is None:
        backend = get_tts_backend(cfg.tts_backend)
        sets = dict(zip(SPLITS, split_voices(backend.voices(), cfg.seed), strict=True))
        return None, {backend.name: backend}, {s: {backend.name: v} for s, v in sets.items()}
    if cfg.tts_backend != PrepareSnipsConfig.tts_backend:
        raise InputError(
            f"--tts-backend {cfg.tts_backend} and --tts-plan: name the engines in the plan"
        )
    plan = load_tts_plan(cfg.tts_plan)
    backends = {e: get_tts_backend(e) for e in plan.engines}
    for b in backends.values():
        b.check_available()
    return plan, backends, resolve_tts_plan(plan, backends, cfg.seed)


def _custom(
    row: NluRow,
    split: str,
    voice: tuple[str, str] | None,
    plan: TTSPlan | None,
    render_of: dict[str, tuple[str, int]],
) -> dict:
    """A supervision's ``custom``: intent and slots; with a plan also its TTS engine and
    voice (a text-only row, ``voice`` None, has none), and in the unseen-engine and
    train_renders splits the id of the test / train utterance it repeats."""
    custom: dict = {"intent": row.intent, "slots": row.slots}
    if plan is not None and voice is not None:
        custom["tts_engine"], custom["tts_voice"] = voice
    if split == UNSEEN_SPLIT:
        custom["source_id"] = row.id.removesuffix(UNSEEN_ID_SUFFIX)
    if split == RENDER_SPLIT:
        custom["source_id"] = render_of[row.id][0]
    return custom


def prepare_snips(cfg: PrepareSnipsConfig) -> dict[str, dict[str, Path]]:
    """Run the whole preparation (see module docstring). Returns the written paths per split."""
    t0 = time.time()
    if cfg.train_renders < 1:
        raise InputError(f"--train-renders must be >= 1, got {cfg.train_renders}")
    corpus_dir = (
        Path(cfg.corpus_dir)
        if cfg.corpus_dir
        else download_snips(cfg.download_dir, cfg.local_copy_dir)
    )
    if not corpus_dir.is_dir():
        raise InputError(f"--corpus-dir {corpus_dir}: no such directory")
    rows_by_split = _read_splits(corpus_dir, cfg)
    check_writable_dir(cfg.output_dir, "--output-dir")

    plan, backends, voice_sets = _tts_voice_sets(cfg)
    if plan is not None and UNSEEN_SPLIT in plan.splits:
        rows_by_split[UNSEEN_SPLIT] = unseen_engine_rows(rows_by_split["test"])
    polly = _polly_index(cfg.polly_dir)
    polly_voices = sorted({v for vs in polly.values() for v in vs})
    polly_sets = (
        dict(zip(SPLITS, split_voices(polly_voices, cfg.seed), strict=True))
        if len(polly_voices) >= 3
        else {}
    )

    asr_ids_by_split = {
        split: asr_train_ids(rows, cfg.asr_train_subset, cfg.seed)
        if split == "train"
        else {r.id for r in rows}
        for split, rows in rows_by_split.items()
    }
    # the other renderings of the ASR train utterances: rendering k of utterance u is u_r<k>
    render_of: dict[str, tuple[str, int]] = {}
    if cfg.train_renders > 1:
        rows_by_split[RENDER_SPLIT] = []
        for k in range(2, cfg.train_renders + 1):
            for r in rows_by_split["train"]:
                if r.id in asr_ids_by_split["train"]:
                    rid = render_id(r.id, k)
                    render_of[rid] = (r.id, k)
                    rows_by_split[RENDER_SPLIT].append(dataclasses.replace(r, id=rid))
        asr_ids_by_split[RENDER_SPLIT] = set(render_of)
    # the rows that get audio: the ASR's, and with --render-nlu-only every train row
    with_audio = dict(asr_ids_by_split)
    if cfg.render_nlu_only:
        with_audio["train"] = {r.id for r in rows_by_split["train"]}
    audio: dict[str, _SplitAudio] = {}
    for split, rows in rows_by_split.items():
        a = audio[split] = _SplitAudio()
        for r in rows:
            if r.id not in with_audio[split]:
                continue
            have = polly.get(r.id, {}) if split in SPLITS else {}  # unseen engines: TTS only
            allowed = [v for v in sorted(have) if v in polly_sets.get(split, sorted(have))]
            if allowed:
                polly_voice = random.Random(f"{cfg.seed}:{r.id}").choice(allowed)
                a.paths[r.id] = have[polly_voice]
                a.voices[r.id] = ("polly", polly_voice)
                continue
            if split == RENDER_SPLIT:
                voice = sample_render_voice(voice_sets["train"], *render_of[r.id], cfg.seed)
            else:
                voice = sample_plan_voice(voice_sets[split], r.id, cfg.seed)
            # with a plan the voice is in the name: a changed plan never reuses another's audio
            name = f"{r.id}.wav" if plan is None else f"{r.id}.{voice.engine}.{voice.name}.wav"
            wav = cfg.audio_dir / split / name
            a.jobs.append(TTSJob(r.id, " ".join(r.words), wav, voice))
            a.paths[r.id] = wav
            a.voices[r.id] = (voice.engine, voice.name)

    # Audio left by an earlier run (or given in --polly-dir) is checked before it is reused
    # and before anything is synthesized or written, for every split: a truncated copy would
    # otherwise be taken at whatever length its data still holds.
    problems = []
    for a in audio.values():
        tts_paths = a.tts_paths
        for uid, path in a.paths.items():
            if path.exists():
                reason = _reused_audio_problem(path, path in tts_paths)
                if reason:
                    problems.append(_audio_error(uid, path, reason, path in tts_paths))
    _fail_on(problems, "unusable audio files")

    for split, a in audio.items():
        synthesize(a.jobs, backends, num_jobs=cfg.num_jobs, desc=f"TTS {split}")

    # Every split's manifests are built and validated before the first one is written.
    manifests: dict[str, tuple[RecordingSet, SupervisionSet]] = {}
    for split, rows in rows_by_split.items():
        paths = audio[split].paths
        tts_paths = audio[split].tts_paths
        recordings = RecordingSet.from_recordings(
            _recording(r.id, paths[r.id], paths[r.id] in tts_paths) for r in rows if r.id in paths
        )
        supervisions = SupervisionSet.from_segments(
            SupervisionSegment(
                id=r.id,
                recording_id=r.id,
                start=0.0,
                duration=recordings[r.id].duration if r.id in paths else NLU_DURATION,
                channel=0,
                text=" ".join(r.words),
                language="English",
                custom=_custom(r, split, audio[split].voices.get(r.id), plan, render_of),
            )
            for r in rows
        )
        try:
            validate_recordings_and_supervisions(
                recordings, supervisions.filter(lambda s, have=paths: s.id in have)
            )
        except AssertionError as e:
            raise InputError(f"{split}: Lhotse validation failed: {e}") from None
        manifests[split] = (recordings, supervisions)

    out: dict[str, dict[str, Path]] = {}
    for split, (recordings, supervisions) in manifests.items():
        rows = rows_by_split[split]
        # the renders are audio of train sentences: the NLU set is train's
        paths = (
            {} if split == RENDER_SPLIT else {"nlu": cfg.output_dir / f"snips_nlu_{split}.jsonl.gz"}
        )
        ids = asr_ids_by_split[split]
        asr_ids = [r.id for r in rows if r.id in ids]
        if split == "train" and cfg.render_nlu_only:
            paths["recordings_all"] = cfg.output_dir / "snips_recordings_train_all.jsonl.gz"
            write_manifest(paths["recordings_all"], recordings)
        asr_rec = RecordingSet.from_recordings(r for r in recordings if r.id in ids)
        asr_sup = SupervisionSet.from_segments(s for s in supervisions if s.id in ids)
        paths["recordings"] = cfg.output_dir / f"snips_recordings_{split}.jsonl.gz"
        paths["supervisions"] = cfg.output_dir / f"snips_supervisions_{split}.jsonl.gz"
        if "nlu" in paths:
            write_manifest(paths["nlu"], supervisions)
        write_manifest(paths["recordings"], asr_rec)
        write_manifest(paths["supervisions"], asr_sup)
        hours = sum(recordings[i].duration for i in asr_ids) / 3600
        logging.info(
            "%s: %d NLU rows (%d text-only), %d with ASR audio (%.2f h), %d voices",
            split,
            len(rows),
            len(rows) - len(recordings),
            len(asr_ids),
            hours,
            sum(len(v) for v in voice_sets.get(split, voice_sets["train"]).values()),
        )
        out[split] = paths
    if cfg.train_renders <= 1:  # an earlier run's renders: not this run's output
        for kind in ("recordings", "supervisions"):
            stale = cfg.output_dir / f"snips_{kind}_{RENDER_SPLIT}.jsonl.gz"
            if stale.exists():
                logging.info("%s: from an earlier --train-renders run; removed", stale)
                stale.unlink()
    if plan is not None:
        with atomic_write(cfg.output_dir / "snips_tts_voices.json") as f:
            json.dump({"plan": plan.to_spec(), "voices": voice_sets}, f, indent=2)
            f.write("\n")

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
    run_cli("prepare-snips", PrepareSnipsConfig, prepare_snips, __doc__, argv, errors=(TTSError,))


if __name__ == "__main__":
    main()
