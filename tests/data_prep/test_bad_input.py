"""Bad input gets a clear error naming the file / utterance, and earlier outputs survive."""

import re
from pathlib import Path

import pytest

from common.io import InputError, atomic_write
from data_prep.snips import PrepareSnipsConfig, main, prepare_snips
from data_prep.tts import EspeakNG, TTSError, TTSJob, Voice, synthesize
from data_prep.validate import validate_nlu_supervisions


def _snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and inode of each manifest: an atomic rewrite gives a new inode even when the
    bytes are equal, so an unchanged snapshot means the file was not rewritten."""
    return {p.name: (p.read_bytes(), p.stat().st_ino) for p in sorted(d.glob("*.jsonl.gz"))}


def test_corrupt_wav_names_file_and_keeps_manifests(prepared):
    # The corrupt WAV is in dev, after train: no split's manifests may be rewritten.
    before = _snapshot(prepared.output_dir)
    assert len(before) == 10
    bad = prepared.audio_dir / "dev" / "snips-valid-1.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(
        InputError, match=r"snips-valid-1\.wav: cannot read audio of utterance snips-valid-1"
    ):
        prepare_snips(prepared)
    assert _snapshot(prepared.output_dir) == before
    bad.unlink()  # deleting the file makes a re-run synthesize it again
    prepare_snips(prepared)
    assert bad.is_file()


def test_rerun_renders_nothing_new(prepared):
    assert prepare_snips(prepared)  # all audio present: no TTS work, same manifests
    # a temp file left by a killed run is never taken for a finished WAV
    (prepared.audio_dir / "test" / ".snips-test-0.abc.wav").write_bytes(b"partial")
    (prepared.audio_dir / "test" / "snips-test-0.wav").unlink()
    jobs = [
        TTSJob(
            "snips-test-0",
            "book a table",
            prepared.audio_dir / "test" / "snips-test-0.wav",
            Voice("en-us+m3"),
        )
    ]
    assert synthesize(jobs, EspeakNG(), num_jobs=1) == 1
    assert synthesize(jobs, EspeakNG(), num_jobs=1) == 0


def test_missing_corpus_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--corpus-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "m")])
    assert exc.value.code == 2
    assert re.search(
        r"^prepare-snips: error: --corpus-dir .*nope: no such directory$",
        capsys.readouterr().err,
        re.M,
    )


def test_missing_split_file(tmp_path, mini_snips_dir):
    d = tmp_path / "c"
    d.mkdir()
    (d / "train.tsv").write_text((mini_snips_dir / "train.tsv").read_text())
    with pytest.raises(InputError, match=r"missing SNIPS file 'valid'"):
        prepare_snips(PrepareSnipsConfig(corpus_dir=d, output_dir=tmp_path / "m"))


def test_strict_mode_names_line(tmp_path, mini_snips_dir):
    d = tmp_path / "c"
    d.mkdir()
    for name in ("valid.tsv", "test.tsv"):
        (d / name).write_text((mini_snips_dir / name).read_text())
    (d / "train.tsv").write_text(
        (mini_snips_dir / "train.tsv").read_text() + "bad-1\tplay jazz\tO\tPlayMusic\n"
    )
    with pytest.raises(InputError, match=r"train\.tsv:14: bad-1: 2 tokens but 1 slot labels"):
        prepare_snips(PrepareSnipsConfig(corpus_dir=d, output_dir=tmp_path / "m", strict=True))


def test_not_a_snips_file(tmp_path):
    from data_prep.snips_tsv import read_snips_tsv

    p = tmp_path / "train.tsv"
    p.write_text("id,text\n1,hello\n")
    with pytest.raises(InputError, match=r"train\.tsv:1: not a SNIPS annotation file"):
        read_snips_tsv(p)


class Flaky(EspeakNG):
    def synthesize(self, text, voice, out_path):
        if "fail" in text:
            raise TTSError("boom")
        super().synthesize(text, voice, out_path)


@pytest.mark.parametrize("num_jobs", [1, 2])
def test_tts_failure_lists_ids_and_keeps_others(tmp_path, num_jobs):
    jobs = [
        TTSJob(f"u{i}", t, tmp_path / f"u{i}.wav", Voice("en-us"))
        for i, t in enumerate(["hello", "please fail", "world"])
    ]
    with pytest.raises(TTSError, match="1 utterances failed.*u1: boom"):
        synthesize(jobs, Flaky(), num_jobs=num_jobs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u0.wav", "u2.wav"]


class _Sup:
    def __init__(self, id, text, custom):
        self.id, self.text, self.custom = id, text, custom


@pytest.mark.parametrize(
    "sup, msg",
    [
        (_Sup("u1", "", {"intent": "PlayMusic", "slots": []}), "u1: empty transcript"),
        (
            _Sup("u2", "play jazz", {"intent": "Nope", "slots": ["O", "O"]}),
            "u2: unknown intent 'Nope'",
        ),
        (
            _Sup("u3", "play jazz", {"intent": "PlayMusic", "slots": ["O"]}),
            "u3: 2 words but 1 slot tags",
        ),
        (
            _Sup("u4", "play jazz", {"intent": "PlayMusic", "slots": ["O", "I-genre"]}),
            "u4: invalid BIO tag 'I-genre'",
        ),
    ],
)
def test_validate_nlu_fields(sup, msg):
    with pytest.raises(InputError, match=msg):
        validate_nlu_supervisions([sup], {"PlayMusic"}, "x.jsonl.gz")


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(p) as f:
        f.write("new partial")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert list(tmp_path.iterdir()) == [p]


def test_download_falls_back_to_local_copy_then_fails_clearly(
    tmp_path, monkeypatch, mini_snips_dir
):
    from data_prep import snips

    monkeypatch.setattr(snips, "UPSTREAM_URL", "http://127.0.0.1:9/{name}")
    got = snips.download_snips(tmp_path / "dl", local_copy_dir=mini_snips_dir, timeout=2)
    assert got == mini_snips_dir
    with pytest.raises(InputError, match="absent holds no copy.*--corpus-dir"):
        snips.download_snips(tmp_path / "dl", local_copy_dir=tmp_path / "absent", timeout=2)
    with pytest.raises(InputError, match="Cannot download the SNIPS annotations"):
        snips.download_snips(tmp_path / "dl", timeout=2)
    assert not list((tmp_path / "dl").glob("*.tsv"))  # nothing half-written under a final name


def test_download_from_a_server(tmp_path, monkeypatch, mini_snips_dir):
    """The real download path (Lhotse resumable_download), against a loopback HTTP server."""
    import functools
    import http.server
    import threading

    from data_prep import snips

    served = tmp_path / "served"
    served.mkdir()
    for name in ("train", "valid", "test"):
        (served / name).write_bytes((mini_snips_dir / f"{name}.tsv").read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        monkeypatch.setattr(snips, "UPSTREAM_URL", f"http://127.0.0.1:{port}/{{name}}")
        out = snips.download_snips(tmp_path / "dl", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert out == tmp_path / "dl"
    for name in ("train", "valid", "test"):
        assert (out / f"{name}.tsv").read_bytes() == (served / name).read_bytes()
    assert not list(out.glob("*.part"))


def test_polly_audio_used_where_present(tmp_path, mini_snips_dir):
    import shutil

    from lhotse import load_manifest

    # upstream layout audio_<voice>/snips/<id>.mp3; WAV copies stand in for the MP3s here
    first = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir, output_dir=tmp_path / "m1", audio_dir=tmp_path / "a1"
    )
    prepare_snips(first)
    polly = tmp_path / "audio_slu"
    for voice in ("Joanna", "Matthew", "Amy"):
        (polly / f"audio_{voice}" / "snips").mkdir(parents=True)
    for split, uid in (
        ("train", "snips-train-0"),
        ("dev", "snips-valid-0"),
        ("test", "snips-test-0"),
    ):
        for voice in ("Joanna", "Matthew", "Amy"):
            shutil.copy(
                first.audio_dir / split / f"{uid}.wav", polly / f"audio_{voice}/snips/{uid}.wav"
            )
    cfg = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir,
        output_dir=tmp_path / "m2",
        audio_dir=tmp_path / "a2",
        polly_dir=polly,
    )
    prepare_snips(cfg)
    recs = load_manifest(cfg.output_dir / "snips_recordings_train_all.jsonl.gz")
    assert "audio_slu" in recs["snips-train-0"].sources[0].source
    assert "audio_slu" not in recs["snips-train-1"].sources[0].source
    assert not (cfg.audio_dir / "train" / "snips-train-0.wav").exists()
