"""TTS backends: each installed engine renders checked 16 kHz audio; bad output (silence, wrong
rate, no samples), unknown voices and missing programs are clear errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.tts import (
    TTS_BACKENDS,
    TTSBackend,
    TTSError,
    TTSJob,
    Voice,
    check_rendered,
    get_tts_backend,
    synthesize,
)


def _backend_or_skip(engine: str) -> TTSBackend:
    backend = get_tts_backend(engine)
    missing = [p for p in backend.programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{engine}: {missing} not installed (make system-deps installs it)")
    return backend


@pytest.mark.parametrize("engine", sorted(TTS_BACKENDS))
def test_engine_renders_checked_16k_audio(engine, tmp_path):
    backend = _backend_or_skip(engine)
    voices = backend.voices()
    assert voices == sorted(voices) and voices
    # the first voice, slow and high, then the last, fast and low: rate and pitch are applied
    for name, rate, pitch in ((voices[0], 150, 65), (voices[-1], 195, 35)):
        out = tmp_path / f"{name}.wav"
        backend.synthesize("play some jazz by queen", Voice(name, rate, pitch, engine), out)
        check_rendered(out)
        info = sf.info(str(out))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.5 < info.duration < 5.0


@pytest.mark.parametrize(
    "engine", ["espeak-ng", "flite", "festival", "mbrola", "mbrola-accented", "pico"]
)
def test_engine_is_deterministic_and_rate_stretches(engine, tmp_path):
    backend = _backend_or_skip(engine)
    voice = backend.voices()[0]
    a, b, slow = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "slow.wav"
    backend.synthesize("what is the weather", Voice(voice, 175, 50, engine), a)
    backend.synthesize("what is the weather", Voice(voice, 175, 50, engine), b)
    assert a.read_bytes() == b.read_bytes()
    backend.synthesize("what is the weather", Voice(voice, 120, 50, engine), slow)
    assert sf.info(str(slow)).duration > 1.2 * sf.info(str(a)).duration


@pytest.mark.parametrize("engine", sorted(TTS_BACKENDS))
def test_unknown_voice_names_engine_and_voice(engine):
    backend = _backend_or_skip(engine)
    with pytest.raises(TTSError, match=rf"TTS engine {engine} has no voice 'no-such-voice'"):
        backend.check_voices([backend.voices()[0], "no-such-voice"])


@pytest.mark.parametrize("engine", sorted(TTS_BACKENDS))
def test_missing_program_names_debian_package(engine, monkeypatch):
    backend = get_tts_backend(engine)
    monkeypatch.setattr("data_prep.tts.shutil.which", lambda name: None)
    with pytest.raises(TTSError, match=rf"apt-get install -y {backend.debian_packages[0]}"):
        backend.check_available()
    with pytest.raises(TTSError, match=f"TTS engine {engine}"):
        backend.voices()


@pytest.mark.parametrize(
    "engine, attr",
    [("mbrola", "database_dir"), ("mbrola-accented", "database_dir"), ("pico", "lang_dir")],
)
def test_engine_without_english_voice_data_names_packages(engine, attr, tmp_path, monkeypatch):
    # the program is there but no English voice data: an error with the install line, not an
    # empty voice list (espeak-ng lists its mb-* voices whether MBROLA's databases exist or not)
    backend = get_tts_backend(engine)
    monkeypatch.setattr("data_prep.tts.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(backend, attr, tmp_path)
    with pytest.raises(TTSError, match=rf"TTS engine {engine} has no English voice in .*apt-get"):
        backend.voices()


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_system_deps_installs_every_engine():
    # `make system-deps` (run by make setup / demo / test) installs what each backend names
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        ["make", "-s", "--eval", "print-deps: ; @echo $(DEBIAN_PACKAGES)", "print-deps"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    installed = set(res.stdout.split())
    for name, backend in sorted(TTS_BACKENDS.items()):
        assert set(backend.debian_packages) <= installed, (name, backend.debian_packages)


def test_mbrola_engines_keep_their_own_voices(tmp_path, monkeypatch):
    # with every MBROLA database installed, mbrola keeps its four English voices (the audio of
    # plans naming it must not depend on which other voices are installed) and mbrola-accented
    # has the 16 others; each lists only the databases that are there
    monkeypatch.setattr("data_prep.tts.shutil.which", lambda name: f"/usr/bin/{name}")
    native, accented = get_tts_backend("mbrola"), get_tts_backend("mbrola-accented")
    for name in (*native.english, *accented.english):
        (tmp_path / name).mkdir()
        (tmp_path / name / name).write_bytes(b"db")
    for backend in (native, accented):
        monkeypatch.setattr(backend, "database_dir", tmp_path)
    assert native.voices() == ["en1", "us1", "us2", "us3"]
    assert len(accented.voices()) == 16 and not set(accented.voices()) & set(native.voices())
    (tmp_path / "de1" / "de1").unlink()
    assert "de1" not in accented.voices() and len(accented.voices()) == 15


def test_mbrola_accented_speaks_english_with_a_foreign_voice(tmp_path):
    backend = _backend_or_skip("mbrola-accented")
    voice = backend.voices()[0]
    ours, theirs = tmp_path / "ours.wav", tmp_path / "theirs.wav"
    backend.synthesize("play some jazz", Voice(voice, 175, 50, "mbrola-accented"), ours)
    # espeak-ng's mb-<voice>-en (English text analysis), not the voice's own language
    subprocess.run(
        ["espeak-ng", "-v", f"mb-{voice}-en", "-w", str(theirs), "play some jazz"],
        check=True,
        capture_output=True,
    )
    # the same length (theirs is at the database's own rate, ours resampled to 16 kHz)
    assert abs(sf.info(str(ours)).duration - sf.info(str(theirs)).duration) < 0.005


def test_pico_markup_escapes_text():
    from data_prep.tts import _pico_markup

    assert _pico_markup("rock & roll <3 >") == "rock & roll  3  "


def test_pico_does_not_obey_tags_in_text(tmp_path):
    backend = _backend_or_skip("pico")
    tagged, bare = tmp_path / "tagged.wav", tmp_path / "bare.wav"
    voice = Voice("en-US", 175, 50, "pico")
    backend.synthesize("<speed level='20'>rock and roll</speed>", voice, tagged)
    backend.synthesize(" speed level='20' rock and roll /speed ", voice, bare)
    # the brackets went and the tag's words were read out, as in the text without brackets
    assert tagged.read_bytes() == bare.read_bytes()


def test_festival_quotes_text():
    from data_prep.tts import _scheme_string

    assert _scheme_string('say "hi" \\ now') == '"say \\"hi\\" \\\\ now"'


class FakeEngine(TTSBackend):
    """Writes whatever ``kind`` of bad (or good) audio a test asks for."""

    name = "fake"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def voices(self) -> list[str]:
        return ["v1"]

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        t = np.arange(8000) / 16000
        tone = 0.3 * np.sin(2 * np.pi * 220 * t)
        if self.kind == "silence":
            sf.write(str(out_path), np.zeros(8000), 16000, subtype="PCM_16", format="WAV")
        elif self.kind == "near_silence":  # dither-level noise is silence too
            sf.write(str(out_path), tone * 1e-4, 16000, subtype="PCM_16", format="WAV")
        elif self.kind == "rate":
            sf.write(str(out_path), tone, 22050, subtype="PCM_16", format="WAV")
        elif self.kind == "stereo":
            sf.write(str(out_path), np.stack([tone, tone], 1), 16000, "PCM_16", format="WAV")
        elif self.kind == "no_samples":
            sf.write(str(out_path), np.zeros((0,)), 16000, subtype="PCM_16", format="WAV")
            with open(out_path, "ab") as f:  # a header longer than 44 bytes, no sample
                f.write(b"\0" * 64)
        else:
            sf.write(str(out_path), tone, 16000, subtype="PCM_16", format="WAV")


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("silence", r"silent audio \(peak -inf dBFS"),
        ("near_silence", "silent audio"),
        ("rate", "wrong format: 22050 Hz"),
        ("stereo", r"wrong format: 16000 Hz, 2 channel\(s\)"),
        ("no_samples", "empty audio|unreadable audio"),
    ],
)
def test_bad_rendered_audio_names_utterance_and_voice(kind, reason, tmp_path):
    jobs = [
        TTSJob("u0", "hello", tmp_path / "u0.wav", Voice("v1", engine="fake")),
        TTSJob("u1", "world", tmp_path / "u1.wav", Voice("v1", engine="fake")),
    ]
    with pytest.raises(TTSError, match=rf"2 utterances failed.*u0: ({reason}).*\(voice fake:v1\)"):
        synthesize(jobs, FakeEngine(kind), num_jobs=1)
    assert list(tmp_path.iterdir()) == []  # nothing left that a re-run would take as done
    assert synthesize(jobs, FakeEngine("good"), num_jobs=1) == 2


def test_jobs_of_several_engines_need_their_backends(tmp_path):
    jobs = [TTSJob("u0", "hi", tmp_path / "u0.wav", Voice("v1", engine="fake"))]
    with pytest.raises(TTSError, match="utterances of TTS engine 'fake' but no such backend"):
        synthesize(jobs, {"other": FakeEngine("good")}, num_jobs=1)
    assert synthesize(jobs, {"fake": FakeEngine("good")}, num_jobs=1) == 1


class BatchingFake(FakeEngine):
    """FakeEngine rendering in batches of 3; a batch holding the text "crash" fails as a whole,
    and that utterance alone fails too."""

    name = "fake"
    batch_size = 3

    def __init__(self, kind: str = "good") -> None:
        super().__init__(kind)
        self.batches: list[list[str]] = []

    def synthesize(self, text: str, voice: Voice, out_path: Path) -> None:
        if text == "crash":
            raise TTSError("engine crashed")
        super().synthesize(text, voice, out_path)

    def synthesize_batch(self, items) -> None:
        self.batches.append([t for t, _, _ in items])
        if any(t == "crash" for t, _, _ in items):
            raise TTSError("batch failed")
        super().synthesize_batch(items)


@pytest.mark.parametrize("kind", ["good", "silence"])
def test_batches_place_checked_files(kind, tmp_path):
    jobs = [
        TTSJob(f"u{i}", f"text {i}", tmp_path / f"u{i}.wav", Voice("v1", engine="fake"))
        for i in range(7)
    ]
    backend = BatchingFake(kind)
    if kind == "good":
        assert synthesize(jobs, backend, num_jobs=1) == 7
        assert [len(b) for b in backend.batches] == [3, 3]  # the last job alone: synthesize
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"u{i}.wav" for i in range(7)]
        for j in jobs:
            check_rendered(j.out_path)
    else:  # a batch's bad audio is named per utterance; nothing is placed
        with pytest.raises(TTSError, match=r"7 utterances failed.*u0: silent audio"):
            synthesize(jobs, backend, num_jobs=1)
        assert list(tmp_path.iterdir()) == []


def test_failed_batch_is_retried_one_at_a_time(tmp_path):
    texts = ["a", "b", "crash", "d", "e"]
    jobs = [
        TTSJob(f"u{i}", t, tmp_path / f"u{i}.wav", Voice("v1", engine="fake"))
        for i, t in enumerate(texts)
    ]
    backend = BatchingFake()
    with pytest.raises(TTSError, match=r"^1 utterances failed.*u2: engine crashed \(voice fake"):
        synthesize(jobs, backend, num_jobs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u0.wav", "u1.wav", "u3.wav", "u4.wav"]
    # a re-run renders only what is missing
    jobs[2] = TTSJob("u2", "c", tmp_path / "u2.wav", Voice("v1", engine="fake"))
    assert synthesize(jobs, BatchingFake(), num_jobs=1) == 1


def test_festival_batch_equals_one_run_per_utterance(tmp_path):
    backend = _backend_or_skip("festival")
    voices = backend.voices()
    items = [
        ("play some music now", Voice(voices[0], 140, 60, "festival")),
        ("book a table in paris", Voice(voices[-1], 200, 40, "festival")),
        ("rate this book five stars", Voice(voices[0], 175, 50, "festival")),
        ("what is the weather", Voice(voices[-1], 120, 55, "festival")),
    ]
    backend.synthesize_batch([(t, v, tmp_path / f"b{i}.wav") for i, (t, v) in enumerate(items)])
    for i, (t, v) in enumerate(items):
        backend.synthesize(t, v, tmp_path / f"s{i}.wav")
        assert (tmp_path / f"b{i}.wav").read_bytes() == (tmp_path / f"s{i}.wav").read_bytes()
    # synthesize() with two processes: the same files
    jobs = [TTSJob(f"u{i}", t, tmp_path / "p" / f"u{i}.wav", v) for i, (t, v) in enumerate(items)]
    (tmp_path / "p").mkdir()
    assert synthesize(jobs, backend, num_jobs=2) == len(items)
    for i in range(len(items)):
        assert (tmp_path / "p" / f"u{i}.wav").read_bytes() == (tmp_path / f"s{i}.wav").read_bytes()
