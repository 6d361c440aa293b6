"""Input checks of the data_prep stages: Lhotse manifests that load, audio that matches them.

Lhotse drops a cut whose audio it cannot load with a mere warning, and takes a truncated WAV
at the length its data still holds. The stages check here first instead, so that bad input
stops a run with the file and the utterance named, before anything is computed or written:

* :func:`load_lhotse_manifest` reads a manifest line by line; a line that is not UTF-8, not
  JSON or not the expected Lhotse item is an :class:`~common.io.InputError` naming file:line.
* :func:`read_audio_header` reads an audio file's header and, for a RIFF WAV, checks that the
  file holds as many bytes of samples as its header declares (a truncated copy does not).
* :func:`recording_audio_problems` compares every audio file of a ``Recording`` with the
  manifest: the file exists and is readable, sampling rate, channel count and duration agree
  (within :data:`DURATION_TOLERANCE_S` or :data:`DURATION_TOLERANCE_REL`, whichever is larger),
  and optionally every sample is finite.

Usage:
    recordings = load_lhotse_manifest(path, RecordingSet)
    for rec in recordings:
        for problem in recording_audio_problems(rec, read_samples="always"):
            print(f"{path}: {problem}")
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.cut.set import deserialize_cut

from common.io import InputError, read_jsonl

#: Audio whose header duration differs from the manifest's by more than the larger of these
#: (seconds, fraction of the manifest duration) is reported; a truncated WAV is far outside.
DURATION_TOLERANCE_S = 0.01
DURATION_TOLERANCE_REL = 0.01

# WAV ``data`` chunk sizes that mean "unknown" (written by streaming writers), not a length.
_STREAMED_WAV_SIZES = frozenset({0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000})
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})

_MANIFEST_ITEMS = {
    RecordingSet: (Recording.from_dict, "recording"),
    SupervisionSet: (SupervisionSegment.from_dict, "supervision"),
    CutSet: (deserialize_cut, "cut"),
}


def load_lhotse_manifest(path: str | Path, kind: type, allow_empty: bool = False):
    """Read a Lhotse ``RecordingSet``, ``SupervisionSet`` or ``CutSet`` JSON-lines manifest.

    Args:
        path: a ``.jsonl`` or ``.jsonl.gz`` manifest.
        kind: ``RecordingSet``, ``SupervisionSet`` or ``CutSet``.
        allow_empty: accept a manifest without items (otherwise an error).

    Raises:
        InputError: the file is missing, empty, not UTF-8 / JSON (naming file:line), a line is
            not a ``kind`` item (e.g. a recordings manifest given for supervisions) or an id
            occurs twice.
    """
    parse, what = _MANIFEST_ITEMS[kind]
    path = Path(path)
    items, first_line = [], {}
    for lineno, obj in read_jsonl(path):
        try:
            item = parse(dict(obj))
        except Exception as e:  # Lhotse's from_dict raises Key/Type/Value/AssertionError
            raise InputError(
                f"{path}:{lineno}: not a Lhotse {what} ({type(e).__name__}: {e})"
            ) from None
        if item.id in first_line:
            raise InputError(
                f"{path}:{lineno}: duplicate {what} id {item.id} (first on line "
                f"{first_line[item.id]})"
            )
        first_line[item.id] = lineno
        items.append(item)
    if not items and not allow_empty:
        raise InputError(f"{path}: empty manifest (no {what}s)")
    if kind is RecordingSet:
        return RecordingSet.from_recordings(items)
    if kind is SupervisionSet:
        return SupervisionSet.from_segments(items)
    return CutSet.from_cuts(items)


def check_writable_dir(folder: str | Path, option: str) -> Path:
    """Create ``folder`` if needed and make sure a file can be created in it.

    Called at the start of a stage, so that a read-only output folder stops the run before
    any work is done rather than after it.

    Raises:
        InputError: naming the folder and ``option`` (e.g. ``"--output-dir"``).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(
            f"{folder}: {option} is not a writable folder ({e.strerror or e})"
        ) from None
    return folder


class AudioProblem(ValueError):
    """Why an audio file is unusable (the caller adds the utterance id)."""


@dataclass(frozen=True)
class AudioHeader:
    """What an audio file's header says."""

    sampling_rate: int
    num_channels: int
    num_frames: int
    subtype: str

    @property
    def duration(self) -> float:
        return self.num_frames / self.sampling_rate


def _missing_file_reason(path: Path) -> str:
    if path.is_absolute():
        return "no such file"
    return f"no such file (a relative path: looked up from the current folder {os.getcwd()})"


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF WAV: the reason if the file holds fewer sample bytes than its header says."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # not a plain RIFF WAV (RF64, FLAC, ...): libsndfile judged it
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            pos += 8
            if chunk_id == b"data":
                if chunk_size in _STREAMED_WAV_SIZES:
                    return None
                have = size - pos
                if have < chunk_size:
                    return (
                        f"truncated: the header declares {chunk_size} bytes of samples, the "
                        f"file holds {have} ({100 * have / chunk_size:.0f}%)"
                    )
                return None
            pos += chunk_size + (chunk_size & 1)


# Subtype of a header read by Lhotse's other backends (a format libsndfile does not decode).
_LHOTSE_SUBTYPE = "lhotse"


def _lhotse_header(path: Path) -> AudioHeader | None:
    """Lhotse's header reader (its other audio backends), or ``None`` if it fails too."""
    from lhotse.audio.backend import info

    try:
        i = info(path)
    except Exception:  # each Lhotse backend raises its own error types
        return None
    return AudioHeader(i.samplerate, i.channels, i.frames, _LHOTSE_SUBTYPE)


def read_audio_header(path: str | Path) -> AudioHeader:
    """Read and check an audio file's header (readable, non-empty, not truncated).

    WAV and FLAC are read with libsndfile; other formats (e.g. Polly's MP3) fall back to
    Lhotse's audio backends.

    Raises:
        AudioProblem: the reason the file is unusable.
    """
    path = Path(path)
    if not path.exists():
        raise AudioProblem(_missing_file_reason(path))
    if path.is_dir():
        raise AudioProblem("is a folder, not an audio file")
    try:
        truncated = _wav_truncation(path)
    except OSError as e:
        raise AudioProblem(f"cannot open ({e.strerror or e})") from None
    if truncated:
        raise AudioProblem(truncated)
    try:
        info = sf.info(str(path))
        hdr = AudioHeader(info.samplerate, info.channels, info.frames, info.subtype)
    except sf.LibsndfileError as e:
        hdr = None if path.suffix.lower() in (".wav", ".flac") else _lhotse_header(path)
        if hdr is None:
            raise AudioProblem(f"not a readable audio file ({e.error_string})") from None
    if hdr.num_frames <= 0 or hdr.sampling_rate <= 0:
        raise AudioProblem("no samples (empty audio)")
    return hdr


def nonfinite_sample_problem(
    path: str | Path, block_frames: int = 1 << 16, lhotse_backend: bool = False
) -> str | None:
    """Read every sample; the reason if one is NaN or infinite or the data cannot be read.

    ``lhotse_backend``: decode with Lhotse (formats libsndfile does not read) instead.
    """
    if lhotse_backend:
        from lhotse.audio.backend import read_audio

        try:
            samples, _ = read_audio(path)
        except Exception as e:  # each Lhotse backend raises its own error types
            return f"cannot read the samples ({type(e).__name__}: {e})"
        return None if np.isfinite(samples).all() else "holds NaN or infinite samples"
    try:
        with sf.SoundFile(str(path)) as f:
            start = 0
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                bad = ~np.isfinite(block)
                if bad.any():
                    frame = start + int(np.argmax(bad.any(axis=1)))
                    return (
                        f"sample {frame} ({frame / f.samplerate:.3f} s) is not finite "
                        f"({block[frame - start][bad[frame - start]][0]})"
                    )
                start += len(block)
    except (OSError, sf.LibsndfileError) as e:
        return f"cannot read the samples ({getattr(e, 'error_string', None) or e})"
    return None


def duration_mismatch(header_s: float, manifest_s: float) -> bool:
    """True if two durations differ by more than the tolerance (see module docstring)."""
    tol = max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_REL * manifest_s)
    return abs(header_s - manifest_s) > tol


def recording_audio_problems(
    rec: Recording, read_samples: Literal["never", "float", "always"] = "never"
) -> list[str]:
    """Compare the audio files of ``rec`` with what the manifest says about them.

    Args:
        rec: a Lhotse recording; only sources of type ``file`` are checked.
        read_samples: also read every sample and check it is finite: ``never``, ``always``,
            or for ``float`` (32/64-bit float) files only, the only ones that can hold NaN/inf.

    Returns:
        One ``"<audio path>: <reason>"`` per problem (empty if the audio is sound).
    """
    problems = []
    for src in rec.sources:
        if src.type != "file":
            continue
        path = Path(src.source)
        try:
            hdr = read_audio_header(path)
        except AudioProblem as e:
            problems.append(f"{path}: {e}")
            continue
        # With transforms (e.g. resampling) the manifest describes the transformed signal:
        # its rate is not the file's, but its duration still is.
        if not rec.transforms and hdr.sampling_rate != rec.sampling_rate:
            problems.append(
                f"{path}: sampled at {hdr.sampling_rate} Hz, the manifest says "
                f"{rec.sampling_rate} Hz"
            )
        if hdr.num_channels != len(src.channels):
            problems.append(
                f"{path}: {hdr.num_channels} channels, the manifest says {len(src.channels)}"
            )
        if duration_mismatch(hdr.duration, rec.duration):
            problems.append(
                f"{path}: {hdr.duration:.3f} s of audio, the manifest says {rec.duration:.3f} s"
            )
        if read_samples == "always" or (read_samples == "float" and hdr.subtype in _FLOAT_SUBTYPES):
            reason = nonfinite_sample_problem(path, lhotse_backend=hdr.subtype == _LHOTSE_SUBTYPE)
            if reason:
                problems.append(f"{path}: {reason}")
    return problems
