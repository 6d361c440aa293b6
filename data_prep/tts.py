"""Speech synthesis behind a small, swappable backend interface (espeak-ng by default).

Synthetic speech is our stand-in for recorded audio: every utterance is rendered with a voice
drawn from its split's voice set, with a random speaking rate and pitch, seeded per utterance
id so that a re-run renders exactly the same audio. Output is 16 kHz mono 16-bit WAV.

Every file is written to a temporary name and renamed when complete, so a killed run leaves
no truncated WAV that a re-run would take as done; a re-run skips finished files.

Usage:
    backend = get_tts_backend("espeak-ng")
    train_v, dev_v, test_v = split_voices(backend.voices(), seed=13)
    jobs = [TTSJob(utt_id, text, out_dir / f"{utt_id}.wav", sample_voice(train_v, utt_id, 13))]
    synthesize(jobs, backend, num_jobs=2)
"""

from __future__ import annotations

import abc
import logging
import random
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.io import atomic_path

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Voice:
    """A TTS voice: backend-specific name, plus rate (words/min) and pitch (0-99)."""

    name: str
    rate: int = 175
    pitch: int = 50


@dataclass(frozen=True)
class TTSJob:
    utt_id: str
    text: str
    out_path: Path
    voice: Voice


class TTSError(RuntimeError):
    pass


class TTSBackend(abc.ABC):
    """Interface of a speech synthesiser; register implementations in ``TTS_BACKENDS``."""

    name: str = ""

    @abc.abstractmethod
    def voices(self) -> list[str]:
        """All usable voice names, sorted."""

    @abc.abstractmethod
    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        """Render ``text`` to a 16 kHz mono 16-bit WAV at ``out_path`` (may be overwritten)."""

    def check_available(self) -> None:
        """Raise :class:`TTSError` with an install hint if the backend cannot run here."""
        return None


class EspeakNG(TTSBackend):
    """espeak-ng (formant synthesis) + sox for resampling to 16 kHz.

    Voices are ``<language-voice>+<variant>`` combinations of espeak-ng's English voices and
    its voice variants (several hundred). Variants that do not produce normal voiced speech
    (whispering) are left out.
    """

    name = "espeak-ng"
    languages = (
        "en",
        "en-us",
        "en-gb-scotland",
        "en-gb-x-gbclan",
        "en-gb-x-rp",
        "en-gb-x-gbcwmd",
        "en-029",
    )
    excluded_variants = frozenset({"whisper", "whisperf", "Demonic"})

    def check_available(self) -> None:
        missing = [b for b in ("espeak-ng", "sox") if shutil.which(b) is None]
        if missing:
            raise TTSError(
                f"{', '.join(missing)} not found on PATH: install with "
                "'apt-get install -y espeak-ng sox' (the README's make targets do this)"
            )

    def _variants(self) -> list[str]:
        out = subprocess.run(
            ["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True
        ).stdout
        names = []
        for line in out.splitlines()[1:]:
            parts = line.split()
            # columns: Pty Language Age/Gender VoiceName File ...; File is "!v/<name>"
            if len(parts) >= 5 and parts[4].startswith("!v/"):
                names.append(parts[4][3:])
        return sorted(n for n in set(names) if n not in self.excluded_variants and " " not in n)

    def voices(self) -> list[str]:
        self.check_available()
        variants = self._variants()
        return sorted(f"{lang}+{v}" for lang in self.languages for v in variants)

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        espeak = subprocess.Popen(
            [
                "espeak-ng",
                "-v",
                voice.name,
                "-s",
                str(voice.rate),
                "-p",
                str(voice.pitch),
                "--stdout",
                text,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        sox = subprocess.run(
            [
                "sox",
                "-q",
                "-t",
                "wav",
                "-",
                "-r",
                str(SAMPLE_RATE),
                "-c",
                "1",
                "-b",
                "16",
                "-t",
                "wav",
                str(out_path),
            ],
            stdin=espeak.stdout,
            capture_output=True,
        )
        espeak.stdout.close()
        err = espeak.stderr.read().decode(errors="replace")
        espeak.wait()
        if espeak.returncode != 0 or sox.returncode != 0:
            raise TTSError(
                f"espeak-ng/sox failed for voice {voice.name}: {err.strip()} "
                f"{sox.stderr.decode(errors='replace').strip()}"
            )


TTS_BACKENDS: dict[str, type[TTSBackend]] = {EspeakNG.name: EspeakNG}


def get_tts_backend(name: str) -> TTSBackend:
    try:
        return TTS_BACKENDS[name]()
    except KeyError:
        raise TTSError(f"unknown TTS backend {name!r}; known: {sorted(TTS_BACKENDS)}") from None


def split_voices(
    voices: list[str], seed: int, dev_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[list[str], list[str], list[str]]:
    """Partition voices into disjoint train / dev / test sets (seeded shuffle).

    Returns:
        ``(train, dev, test)`` sorted voice-name lists; dev and test get at least one each.
    """
    if len(voices) < 3:
        raise TTSError(f"need at least 3 voices for disjoint splits, got {len(voices)}")
    shuffled = sorted(voices)
    random.Random(seed).shuffle(shuffled)
    n_dev = max(1, round(len(voices) * dev_fraction))
    n_test = max(1, round(len(voices) * test_fraction))
    dev, test, train = (
        shuffled[:n_dev],
        shuffled[n_dev : n_dev + n_test],
        shuffled[n_dev + n_test :],
    )
    return sorted(train), sorted(dev), sorted(test)


def sample_voice(
    voices: list[str],
    utt_id: str,
    seed: int,
    rate_range: tuple[int, int] = (140, 200),
    pitch_range: tuple[int, int] = (30, 70),
) -> Voice:
    """Pick a voice, rate and pitch for ``utt_id``, deterministically from ``seed`` and the id."""
    rng = random.Random(f"{seed}:{utt_id}")
    return Voice(rng.choice(voices), rng.randint(*rate_range), rng.randint(*pitch_range))


def _run_job(args: tuple[TTSBackend, TTSJob]) -> str | None:
    backend, job = args
    try:
        # atomic_path: a temp file beside the output with ordinary permissions (0666 less the
        # umask, not mkstemp's 0600), renamed over it only when complete, removed on failure.
        with atomic_path(job.out_path) as tmp:
            backend.synthesize(job.text, job.voice, tmp)
            if tmp.stat().st_size <= 44:
                raise TTSError("empty audio")
        return None
    except Exception as e:  # reported per utterance by the caller
        return f"{job.utt_id}: {e}"


def synthesize(
    jobs: list[TTSJob], backend: TTSBackend, num_jobs: int = 2, desc: str = "TTS"
) -> int:
    """Render every job whose output does not exist yet, in ``num_jobs`` processes.

    Returns:
        The number of files rendered (skipped ones not counted).

    Raises:
        TTSError: listing the utterance ids that failed (the others are kept).
    """
    backend.check_available()
    todo = [j for j in jobs if not j.out_path.is_file()]
    logging.info(
        "%s: %d of %d utterances to render (%d already done)",
        desc,
        len(todo),
        len(jobs),
        len(jobs) - len(todo),
    )
    if not todo:
        return 0
    work = [(backend, j) for j in todo]
    if num_jobs <= 1:
        errors = [
            e for e in tqdm(map(_run_job, work), total=len(todo), desc=desc, mininterval=2.0) if e
        ]
    else:
        with ProcessPoolExecutor(max_workers=num_jobs) as pool:
            results = pool.map(_run_job, work, chunksize=16)
            errors = [e for e in tqdm(results, total=len(todo), desc=desc, mininterval=2.0) if e]
    if errors:
        raise TTSError(
            f"{len(errors)} utterances failed to synthesize, e.g.: " + "; ".join(errors[:5])
        )
    return len(todo)
