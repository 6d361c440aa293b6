"""Speech synthesis behind a small, swappable backend interface (espeak-ng, flite, festival,
mbrola, mbrola-accented, pico).

Synthetic speech is our stand-in for recorded audio: every utterance is rendered with a voice
drawn from its split's voice set, with a random speaking rate and pitch, seeded per utterance
id so that a re-run renders exactly the same audio. Output is 16 kHz mono 16-bit WAV.

Backends (``TTS_BACKENDS``; a voice is named ``engine:voice``, e.g. ``flite:slt``):

* ``espeak-ng`` (formant synthesis; Debian ``espeak-ng``): every English voice x variant;
* ``flite`` (CMU Flite 2; Debian ``flite``): ``kal`` (8 kHz diphone), ``kal16`` (diphone),
  ``awb``, ``rms``, ``slt`` (clustergen); the limited-domain ``awb_time`` is left out;
* ``festival`` (Festival 2.5; Debian ``festival`` + voice packages ``festvox-kallpc16k``,
  ``festvox-kdlpc16k``, ``festvox-us-slt-hts``): every installed English voice;
* ``mbrola`` (MBROLA diphone voices driven by espeak-ng; Debian ``mbrola``, ``mbrola-us1``,
  ``-us2``, ``-us3``, ``-en1``, contrib / non-free): ``us1``, ``us2``, ``us3``, ``en1``;
* ``mbrola-accented`` (English through MBROLA's voices of nine other languages, espeak-ng's
  ``mb-*-en``; Debian ``mbrola-af1`` ... ``mbrola-sw2``): ``af1``, ``de1`` ... ``sw2`` (16);
* ``pico`` (SVOX Pico, HMM-based; Debian ``libttspico-utils``, non-free): ``en-US``, ``en-GB``.

:class:`Voice` carries rate and pitch in espeak-ng's units (words per minute; 0-99, 50 = the
voice's own pitch). espeak-ng takes them as they are; the other engines stretch durations by
``175 / rate`` (flite ``duration_stretch``, Festival ``Duration_Stretch`` or the HTS engine's
speed) and shift the pitch by ``(pitch - 50) / 10`` semitones with sox's ``pitch`` effect after
synthesis, which works the same for every voice (flite's ``rms`` and Festival's HTS voice
ignore their own F0 controls). Their output is resampled to 16 kHz with sox.

Every file is checked after synthesis: a file that is not 16 kHz mono 16-bit PCM, holds no
samples, or is silent (peak below -60 dBFS) is a :class:`TTSError` naming the utterance id and
voice. A voice name an engine does not have, and an engine whose program is missing (with the
Debian package that installs it), are errors before anything is rendered.

Every file is written to a temporary name and renamed when complete, so a killed run leaves
no truncated WAV that a re-run would take as done; a re-run skips finished files.

Usage:
    backend = get_tts_backend("espeak-ng")
    train_v, dev_v, test_v = split_voices(backend.voices(), seed=13)
    jobs = [TTSJob(utt_id, text, out_dir / f"{utt_id}.wav", sample_voice(train_v, utt_id, 13))]
    synthesize(jobs, backend, num_jobs=2)
    synthesize(jobs, {"flite": get_tts_backend("flite"), ...})   # jobs of several engines
"""

from __future__ import annotations

import abc
import logging
import math
import random
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from common.io import atomic_path

SAMPLE_RATE = 16000
#: a rendered file whose peak is below this (-60 dBFS) counts as silence
SILENCE_PEAK = 1e-3
#: espeak-ng's default rate (words/min): the other engines' duration stretch is 175 / rate
NEUTRAL_RATE = 175


@dataclass(frozen=True)
class Voice:
    """A TTS voice: engine, engine-specific name, plus rate (words/min) and pitch (0-99, 50 =
    the voice's own)."""

    name: str
    rate: int = NEUTRAL_RATE
    pitch: int = 50
    engine: str = "espeak-ng"

    @property
    def key(self) -> str:
        """``engine:name``, the voice's name in a TTS plan."""
        return f"{self.engine}:{self.name}"


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
    #: programs the backend runs, and the Debian packages that install them (with its voices)
    programs: tuple[str, ...] = ()
    debian_packages: tuple[str, ...] = ()
    #: utterances per :meth:`synthesize_batch` call in :func:`synthesize` (1: one at a time)
    batch_size: int = 1

    @abc.abstractmethod
    def voices(self) -> list[str]:
        """All usable voice names, sorted."""

    @abc.abstractmethod
    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        """Render ``text`` to a 16 kHz mono 16-bit WAV at ``out_path`` (may be overwritten)."""

    def synthesize_batch(self, items: list[tuple[str, Voice, Path]]) -> None:
        """:meth:`synthesize` of every ``(text, voice, out_path)``; the same files, written by
        fewer program runs where the engine allows it. Raises on the first failure."""
        for text, voice, out_path in items:
            self.synthesize(text, voice, out_path)

    def check_available(self) -> None:
        """Raise :class:`TTSError` with an install hint if the backend cannot run here."""
        missing = [b for b in self.programs if shutil.which(b) is None]
        if missing:
            raise TTSError(
                f"TTS engine {self.name}: {', '.join(missing)} not found on PATH: install with "
                f"'apt-get install -y {' '.join(self.debian_packages)}' (make system-deps does "
                "this)"
            )

    def _installed(self, found: list[str], where: Path) -> list[str]:
        """``found`` (the English voices whose data is in ``where``), or a :class:`TTSError`
        with the install line when there is none."""
        if not found:
            raise TTSError(
                f"TTS engine {self.name} has no English voice in {where}: install with "
                f"'apt-get install -y {' '.join(self.debian_packages)}'"
            )
        return found

    def check_voices(self, names: list[str]) -> None:
        """Raise :class:`TTSError` naming the engine and voice for a voice it does not have."""
        have = set(self.voices())
        unknown = [n for n in names if n not in have]
        if unknown:
            raise TTSError(
                f"TTS engine {self.name} has no voice {unknown[0]!r}; its voices: "
                f"{_shorten(sorted(have))}"
            )


def _shorten(names: list[str], shown: int = 12) -> str:
    more = f" ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _run_tool(cmd: list[str], what: str, input: bytes | None = None) -> None:
    """Run ``cmd``; a non-zero exit is a :class:`TTSError` with its stderr."""
    res = subprocess.run(cmd, input=input, capture_output=True)
    if res.returncode != 0:
        err = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()
        raise TTSError(f"{what} failed (exit {res.returncode}): {err[-1] if err else ''}")


def to_16k_mono(src: Path, dst: Path, semitones: float = 0.0) -> None:
    """Convert ``src`` to 16 kHz mono 16-bit WAV at ``dst`` with sox, pitch-shifted by
    ``semitones`` (sox ``pitch``: WSOLA, the duration is kept). No dither (``-D``), so the
    same input always gives the same bytes and silence stays silence."""
    cmd = ["sox", "-q", "-D", str(src), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16"]
    cmd += ["-e", "signed-integer", "-t", "wav", str(dst)]
    if abs(semitones) > 1e-9:
        cmd += ["pitch", f"{100 * semitones:.1f}"]
    _run_tool(cmd, "sox")


def duration_stretch(voice: Voice) -> float:
    """Duration factor of ``voice.rate`` for engines that stretch durations (> 1 = slower)."""
    return round(NEUTRAL_RATE / max(voice.rate, 1), 4)


def pitch_semitones(voice: Voice) -> float:
    """Pitch shift of ``voice.pitch`` (espeak-ng's 0-99 scale) for the other engines."""
    return (voice.pitch - 50) / 10


def check_rendered(path: Path) -> None:
    """Raise :class:`TTSError` unless ``path`` is non-silent 16 kHz mono 16-bit PCM audio."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise TTSError(f"unreadable audio ({e})") from None
    if info.frames == 0:
        raise TTSError("empty audio (no samples)")
    if (info.samplerate, info.channels, info.subtype) != (SAMPLE_RATE, 1, "PCM_16"):
        raise TTSError(
            f"wrong format: {info.samplerate} Hz, {info.channels} channel(s), {info.subtype}; "
            f"expected {SAMPLE_RATE} Hz mono PCM_16"
        )
    x, _ = sf.read(str(path), dtype="float32")
    peak = float(np.max(np.abs(x)))
    if not peak >= SILENCE_PEAK:  # also catches NaN
        db = 20 * math.log10(peak) if peak > 0 else -math.inf
        raise TTSError(f"silent audio (peak {db:.0f} dBFS over {info.frames} samples)")


class EspeakNG(TTSBackend):
    """espeak-ng (formant synthesis) + sox for resampling to 16 kHz.

    Voices are ``<language-voice>+<variant>`` combinations of espeak-ng's English voices and
    its voice variants (several hundred). Variants that do not produce normal voiced speech
    (whispering) are left out.
    """

    name = "espeak-ng"
    programs = ("espeak-ng", "sox")
    debian_packages = ("espeak-ng", "sox")
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
        _espeak_to_wav(voice.name, voice, text, out_path)


def _espeak_to_wav(espeak_voice: str, voice: Voice, text: str, out_path: Path) -> None:
    """``espeak-ng -v espeak_voice`` at ``voice``'s rate and pitch, piped through sox into a
    16 kHz mono 16-bit WAV at ``out_path`` (an MBROLA voice ``mb-*`` too: espeak-ng drives it)."""
    espeak = subprocess.Popen(
        [
            "espeak-ng",
            "-v",
            espeak_voice,
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
            "-D",  # no dither: the same text and voice give the same bytes on every run
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
            f"espeak-ng/sox failed for voice {espeak_voice}: {err.strip()} "
            f"{sox.stderr.decode(errors='replace').strip()}"
        )


class Flite(TTSBackend):
    """CMU Flite 2 (Black & Lenzo, "Flite: a small fast run-time synthesis engine", SSW4
    2001): diphone (``kal``, ``kal16``) and clustergen (``awb``, ``rms``, ``slt``) voices.

    Flite falls back to its default voice, with exit status 0, for a name it does not know,
    so names are checked against ``flite -lv`` before synthesis.
    """

    name = "flite"
    programs = ("flite", "sox")
    debian_packages = ("flite", "sox")
    #: limited-domain voices (``awb_time`` speaks only clock times)
    excluded_voices = frozenset({"awb_time"})

    def voices(self) -> list[str]:
        self.check_available()
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
        names = out.split(":", 1)[1].split() if ":" in out else []
        return sorted(set(names) - self.excluded_voices)

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            raw = Path(tmp) / "raw.wav"
            _run_tool(
                [
                    "flite",
                    "-voice",
                    voice.name,
                    "--setf",
                    f"duration_stretch={duration_stretch(voice)}",
                    "-t",
                    text,
                    "-o",
                    str(raw),
                ],
                f"flite (voice {voice.name})",
            )
            to_16k_mono(raw, out_path, pitch_semitones(voice))


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Festival(TTSBackend):
    """The Festival Speech Synthesis System 2.5 (Taylor, Black & Caley, "The architecture of
    the Festival speech synthesis system", SSW3 1998) with its installed English voices:
    Debian's ``kal_diphone`` and ``ked_diphone`` (residual-LPC diphone) and
    ``cmu_us_slt_arctic_hts`` (HMM-based, 32 kHz).

    One ``festival -b`` run per utterance with a generated Scheme script; the rate is set with
    ``Duration_Stretch`` (and the HTS engine's speed ``-r`` for HTS voices, which ignore it).
    :meth:`synthesize_batch` renders up to :attr:`batch_size` utterances in one run (festival's
    start-up and voice loading are half of an utterance's time); each utterance selects its voice
    again, so its file is the one of a run of its own, byte for byte (tested).
    """

    name = "festival"
    programs = ("festival", "sox")
    debian_packages = (
        "festival",
        "festvox-kallpc16k",
        "festvox-kdlpc16k",
        "festvox-us-slt-hts",
        "sox",
    )
    languages = frozenset({"english", "american", "british"})
    batch_size = 16
    _list_script = (
        '(mapcar (lambda (v) (format t "voice\\t%s\\t%l\\n" v '
        "(cadr (assoc 'language (cadr (voice.description v)))))) (voice.list))\n"
    )

    def _festival(self, script: str, what: str) -> str:
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            path = Path(tmp) / "run.scm"
            path.write_text(script, encoding="utf-8")
            res = subprocess.run(["festival", "-b", str(path)], capture_output=True, text=True)
        # festival -b exits 0 after some Scheme errors; it prints "SIOD ERROR" for them
        if res.returncode != 0 or "SIOD ERROR" in res.stderr + res.stdout:
            err = (res.stderr + res.stdout).strip().splitlines()
            raise TTSError(f"{what} failed (exit {res.returncode}): {err[0] if err else ''}")
        return res.stdout

    def voices(self) -> list[str]:
        self.check_available()
        names = []
        for line in self._festival(self._list_script, "festival (listing voices)").splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] == "voice" and parts[2].lower() in self.languages:
                names.append(parts[1])
        if not names:
            raise TTSError(
                "TTS engine festival has no English voice installed: install with "
                f"'apt-get install -y {' '.join(self.debian_packages)}'"
            )
        return sorted(names)

    @staticmethod
    def _utterance_script(text: str, voice: Voice, raw: Path) -> str:
        stretch = duration_stretch(voice)
        return (
            f"(voice_{voice.name})\n"
            f"(Parameter.set 'Duration_Stretch {stretch})\n"
            '(if (string-equal (Param.get \'Synth_Method) "HTS")\n'
            "  (set! hts_engine_params (append hts_engine_params "
            f'(list (list "-r" {1 / stretch:.4f})))))\n'
            f"(set! utt1 (Utterance Text {_scheme_string(text)}))\n"
            "(utt.synth utt1)\n"
            f"(utt.save.wave utt1 {_scheme_string(str(raw))} 'riff)\n"
        )

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        self.synthesize_batch([(text, voice, out_path)])

    def synthesize_batch(self, items: list[tuple[str, Voice, Path]]) -> None:
        if not items:
            return
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            raws = [Path(tmp) / f"raw{i}.wav" for i in range(len(items))]
            script = "".join(
                self._utterance_script(text, voice, raw)
                for (text, voice, _), raw in zip(items, raws, strict=True)
            )
            voices = sorted({v.name for _, v, _ in items})
            self._festival(script, f"festival (voice {', '.join(voices)})")
            for (_, voice, out_path), raw in zip(items, raws, strict=True):
                if not raw.is_file():
                    raise TTSError(f"festival (voice {voice.name}) wrote no audio")
                to_16k_mono(raw, out_path, pitch_semitones(voice))


class Mbrola(TTSBackend):
    """MBROLA diphone synthesis (Dutoit et al., "The MBROLA project: towards a set of
    high-quality speech synthesizers free of use for non-commercial purposes", ICSLP 1996)
    driven by espeak-ng (text analysis and prosody), with the English voices ``us1`` (female),
    ``us2``, ``us3`` (male, American) and ``en1`` (male, British): concatenated recordings of
    real speakers, another synthesis method than espeak-ng's formants. Rate and pitch are
    espeak-ng's. A voice counts only when its MBROLA database is installed (espeak-ng lists
    its ``mb-*`` voices either way). Debian: ``mbrola`` and ``mbrola-us1`` ... in the
    ``contrib`` / ``non-free`` components; each voice database has its own licence (use with
    the MBROLA program only, not sold without its owner's permission: README).
    """

    name = "mbrola"
    programs = ("espeak-ng", "mbrola", "sox")
    debian_packages = (
        "espeak-ng",
        "mbrola",
        "mbrola-us1",
        "mbrola-us2",
        "mbrola-us3",
        "mbrola-en1",
        "sox",
    )
    english = ("en1", "us1", "us2", "us3")
    database_dir = Path("/usr/share/mbrola")

    def voices(self) -> list[str]:
        self.check_available()
        found = [v for v in self.english if (self.database_dir / v / v).is_file()]
        return self._installed(found, self.database_dir)

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        _espeak_to_wav(f"mb-{voice.name}", voice, text, out_path)


class MbrolaAccented(Mbrola):
    """English spoken with MBROLA's diphone voices of other languages: espeak-ng's ``mb-*-en``
    voices map its English phonemes onto the nearest diphones of an Afrikaans, Dutch, French,
    German, Greek, Hungarian, Polish, Romanian or Swedish speaker, so the result is accented
    English by 16 more recorded speakers (7 female, 9 male: espeak-ng's list), beside the four
    native English voices of ``mbrola``. A separate engine, so that the ``mbrola`` engine's
    voices (and the audio of every plan that names it) do not depend on which packages are
    installed. Debian: ``mbrola-af1`` ... ``mbrola-sw2`` (contrib / non-free); each database
    has its own licence (``/usr/share/doc/mbrola-<voice>/copyright``; typically: with the
    MBROLA program only, not sold nor in a sold product without the owner's permission).
    """

    name = "mbrola-accented"
    english = (
        "af1",  # Afrikaans, male
        "de1",  # German, female
        "de2",  # German, male
        "de3",  # German, female
        "de4",  # German, male
        "de5",  # German, female
        "de6",  # German, male
        "fr1",  # French, male
        "fr4",  # French, female
        "gr2",  # Greek, male
        "hu1",  # Hungarian, female
        "nl2",  # Dutch, male
        "pl1",  # Polish, female
        "ro1",  # Romanian, male
        "sw1",  # Swedish, male
        "sw2",  # Swedish, female
    )
    debian_packages = ("espeak-ng", "mbrola", *(f"mbrola-{v}" for v in english), "sox")

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        _espeak_to_wav(f"mb-{voice.name}-en", voice, text, out_path)


def _pico_markup(text: str) -> str:
    """``text`` made safe for SVOX Pico's markup parser: ``<`` and ``>`` become spaces (the
    parser takes ``<...>`` as a tag and reads entities such as ``&lt;`` out letter by letter,
    so there is no escape; normalised transcripts hold neither)."""
    return text.replace("<", " ").replace(">", " ")


class Pico(TTSBackend):
    """SVOX Pico (HMM-based parametric synthesis, the Android TTS engine of 2009-2013) through
    ``pico2wave``, with its English voices ``en-US`` and ``en-GB`` (both female). The rate is
    Pico's ``<speed level="...">`` markup (100 = the voice's own speed, so ``100 / stretch``);
    the pitch is shifted with sox as for flite and Festival. Output is 16 kHz. Debian:
    ``libttspico-utils`` in the ``non-free`` component (Apache-2.0 code and voice data whose
    sources are not published).
    """

    name = "pico"
    programs = ("pico2wave", "sox")
    debian_packages = ("libttspico-utils", "sox")
    english = ("en-GB", "en-US")
    lang_dir = Path("/usr/share/pico/lang")

    def voices(self) -> list[str]:
        self.check_available()
        found = [v for v in self.english if (self.lang_dir / f"{v}_ta.bin").is_file()]
        return self._installed(found, self.lang_dir)

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        speed = round(100 / duration_stretch(voice))
        with tempfile.TemporaryDirectory(prefix="pico-") as tmp:
            raw = Path(tmp) / "raw.wav"  # pico2wave wants a name ending in .wav
            _run_tool(
                [
                    "pico2wave",
                    "-l",
                    voice.name,
                    "-w",
                    str(raw),
                    f'<speed level="{speed}">{_pico_markup(text)}</speed>',
                ],
                f"pico2wave (voice {voice.name})",
            )
            to_16k_mono(raw, out_path, pitch_semitones(voice))


TTS_BACKENDS: dict[str, type[TTSBackend]] = {
    EspeakNG.name: EspeakNG,
    Flite.name: Flite,
    Festival.name: Festival,
    Mbrola.name: Mbrola,
    MbrolaAccented.name: MbrolaAccented,
    Pico.name: Pico,
}


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
            check_rendered(tmp)
        return None
    except Exception as e:  # reported per utterance by the caller
        return f"{job.utt_id}: {e} (voice {job.voice.key})"


def _place(job: TTSJob, rendered: Path) -> str | None:
    """Check ``rendered`` (a batch's output) and move it to ``job.out_path`` atomically."""
    try:
        with atomic_path(job.out_path) as tmp:
            shutil.copyfile(rendered, tmp)
            if tmp.stat().st_size <= 44:
                raise TTSError("empty audio")
            check_rendered(tmp)
        return None
    except Exception as e:
        return f"{job.utt_id}: {e} (voice {job.voice.key})"


def _run_chunk(args: tuple[TTSBackend, list[TTSJob]]) -> list[str]:
    """Render ``jobs`` (one backend) in one :meth:`TTSBackend.synthesize_batch` call; if that
    call fails, the jobs not placed yet one at a time, so the error names the utterance."""
    backend, jobs = args
    if len(jobs) > 1:
        errors: list[str] = []
        try:
            with tempfile.TemporaryDirectory(prefix="tts-batch-") as tmp:
                outs = [Path(tmp) / f"{i}.wav" for i in range(len(jobs))]
                backend.synthesize_batch(
                    [(j.text, j.voice, o) for j, o in zip(jobs, outs, strict=True)]
                )
                errors = [e for j, o in zip(jobs, outs, strict=True) if (e := _place(j, o))]
            return errors
        except Exception:  # one at a time below: its error names the utterance
            jobs = [j for j in jobs if not j.out_path.is_file()]
    return [e for j in jobs if (e := _run_job((backend, j)))]


def _chunks(work: list[tuple[TTSBackend, TTSJob]]) -> list[tuple[TTSBackend, list[TTSJob]]]:
    """The jobs in order, consecutive jobs of one backend in chunks of its ``batch_size``."""
    chunks: list[tuple[TTSBackend, list[TTSJob]]] = []
    for backend, job in work:
        last = chunks[-1] if chunks else None
        if last is not None and last[0] is backend and len(last[1]) < backend.batch_size:
            last[1].append(job)
        else:
            chunks.append((backend, [job]))
    return chunks


def synthesize(
    jobs: list[TTSJob],
    backend: TTSBackend | Mapping[str, TTSBackend],
    num_jobs: int = 2,
    desc: str = "TTS",
) -> int:
    """Render every job whose output does not exist yet, in ``num_jobs`` processes.

    Args:
        jobs: what to render; each job's ``voice.engine`` picks its backend.
        backend: one backend, or the backends by engine name (jobs of several engines).

    Returns:
        The number of files rendered (skipped ones not counted).

    Raises:
        TTSError: listing the utterance ids that failed, with their voices (the others are
            kept); or before any work, naming an engine without a backend or not installed.
    """
    backends = {backend.name: backend} if isinstance(backend, TTSBackend) else dict(backend)
    todo = [j for j in jobs if not j.out_path.is_file()]
    for engine in sorted({j.voice.engine for j in jobs}):
        if engine not in backends:
            raise TTSError(
                f"{desc}: utterances of TTS engine {engine!r} but no such backend given "
                f"(have {sorted(backends)})"
            )
    for engine in sorted({j.voice.engine for j in jobs} or set(backends)):
        backends[engine].check_available()
    logging.info(
        "%s: %d of %d utterances to render (%d already done)",
        desc,
        len(todo),
        len(jobs),
        len(jobs) - len(todo),
    )
    if not todo:
        return 0
    # a batching engine (festival) renders several utterances per program run
    todo.sort(key=lambda j: backends[j.voice.engine].batch_size > 1)  # stable: batches last
    chunks = _chunks([(backends[j.voice.engine], j) for j in todo])
    errors: list[str] = []
    with tqdm(total=len(todo), desc=desc, mininterval=2.0) as bar:
        if num_jobs <= 1:
            results = map(_run_chunk, chunks)
        else:
            pool = ProcessPoolExecutor(max_workers=num_jobs)
            batched = any(len(c[1]) > 1 for c in chunks)
            results = pool.map(_run_chunk, chunks, chunksize=1 if batched else 16)
        try:
            for (_, chunk), errs in zip(chunks, results, strict=True):
                errors += errs
                bar.update(len(chunk))
        finally:
            if num_jobs > 1:
                pool.shutdown()
    if errors:
        raise TTSError(
            f"{len(errors)} utterances failed to synthesize, e.g.: " + "; ".join(errors[:5])
        )
    return len(todo)
