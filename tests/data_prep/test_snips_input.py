"""prepare-snips on bad input (issue 10): TSV robustness, --max-words, reused audio, permissions.

Every failure is one InputError naming file and line (or utterance id), raised before any
manifest is written; manifests are reproducible byte for byte.
"""

from __future__ import annotations

import logging
import os
import stat

import pytest
import soundfile as sf

from common.io import InputError
from data_prep.snips import PrepareSnipsConfig, prepare_snips
from data_prep.snips_tsv import SNIPS_INTENTS, parse_row, read_snips_tsv
from data_prep.tts import EspeakNG, TTSJob, Voice, synthesize
from tests.conftest import HEADER
from tests.data_prep.conftest import write_tone

ROW = "a1\tplay jazz\tO PlayMusic/genre\tPlayMusic\n"


def _snapshot(d):
    return {p.name: (p.read_bytes(), p.stat().st_ino) for p in sorted(d.glob("*.jsonl.gz"))}


def _corpus(tmp_path, mini_snips_dir, train_text: str):
    """A corpus folder with the mini dev/test files and the given train file."""
    d = tmp_path / "corpus"
    d.mkdir()
    for name in ("valid.tsv", "test.tsv"):
        (d / name).write_text((mini_snips_dir / name).read_text(encoding="utf-8"), encoding="utf-8")
    (d / "train.tsv").write_text(train_text, encoding="utf-8")
    return d


# ---- item 6: TSV input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, match",
    [
        ((HEADER + ROW).encode("utf-16"), r"train\.tsv:1: UTF-16 text \(byte-order mark\)"),
        ((HEADER + ROW).encode("utf-16-le"), r"train\.tsv:1: NUL byte: not UTF-8 text"),
        (
            (HEADER + ROW + "a2\tplay café\tO O\tPlayMusic\n").encode("latin-1"),
            r"train\.tsv:3: not UTF-8 text \(byte 0xe9 at column 12\); convert the file to UTF-8",
        ),
        (b"", r"train\.tsv:1: empty file \(expected a SNIPS header"),
        (ROW.encode(), r"train\.tsv:1: not a SNIPS annotation file .*header line is missing"),
        (
            (HEADER + ROW + "a2\tplay " + "x" * 200_000 + "\tO O\tPlayMusic\n").encode(),
            r"train\.tsv:3: malformed TSV line \(field larger than field limit",
        ),
    ],
    ids=["utf16-bom", "utf16-no-bom", "latin1", "empty", "no-header", "csv-error"],
)
def test_tsv_errors_name_file_and_line(tmp_path, content, match):
    p = tmp_path / "train.tsv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_snips_tsv(p)


def test_tsv_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_bytes((HEADER + ROW).encode("utf-8-sig"))
    rows, report = read_snips_tsv(p)
    assert [r.id for r in rows] == ["a1"] and not report.skipped


def test_wrong_column_count_is_skipped_with_line_or_fails_when_strict(
    tmp_path, mini_snips_dir, caplog
):
    train = (mini_snips_dir / "train.tsv").read_text(encoding="utf-8")
    train += "short-1\tplay jazz\tO O\n" + "long-1\tplay jazz\tO O\tPlayMusic\textra\n"
    d = _corpus(tmp_path, mini_snips_dir, train)
    rows, report = read_snips_tsv(d / "train.tsv")
    assert [(line, uid) for line, uid, _ in report.skipped] == [(14, "short-1"), (15, "long-1")]
    with caplog.at_level(logging.WARNING):
        report.log()
    assert f"{d / 'train.tsv'}:14: skipped short-1: expected 4 tab-separated fields, got 3" in (
        caplog.text
    )
    cfg = PrepareSnipsConfig(corpus_dir=d, output_dir=tmp_path / "m", strict=True)
    with pytest.raises(InputError, match=r"train\.tsv:14: short-1: expected 4 tab-separated"):
        prepare_snips(cfg)
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


def test_header_only_file_has_no_usable_rows(tmp_path, mini_snips_dir):
    d = _corpus(tmp_path, mini_snips_dir, HEADER)
    with pytest.raises(InputError, match=r"train\.tsv: no usable rows \(0 rows, 0 skipped\)"):
        prepare_snips(PrepareSnipsConfig(corpus_dir=d, output_dir=tmp_path / "m"))


# ---- item 5: --max-words ---------------------------------------------------------------------


def test_max_words_in_parse_row():
    row = ["id", "play " + "jazz " * 5, "O " * 6, "PlayMusic"]
    row[1], row[2] = row[1].strip(), row[2].strip()
    assert parse_row(row, frozenset(SNIPS_INTENTS), max_words=6)[0].words[-1] == "jazz"
    with pytest.raises(ValueError, match=r"6 words after normalisation, more than --max-words 5"):
        parse_row(row, frozenset(SNIPS_INTENTS), max_words=5)
    assert parse_row(row, frozenset(SNIPS_INTENTS), max_words=0)  # 0: no limit


def test_runaway_row_is_skipped_and_counted_or_fails_when_strict(tmp_path, mini_snips_dir, caplog):
    n = 10_000
    huge = f"huge-1\t{' '.join(['jazz'] * n)}\t{' '.join(['O'] * n)}\tPlayMusic\n"
    train = (mini_snips_dir / "train.tsv").read_text(encoding="utf-8") + huge
    d = _corpus(tmp_path, mini_snips_dir, train)
    assert PrepareSnipsConfig().max_words == 100
    rows, report = read_snips_tsv(d / "train.tsv", max_words=100)
    assert "huge-1" not in {r.id for r in rows} and len(rows) == 12
    assert report.skipped == [
        (14, "huge-1", "10000 words after normalisation, more than --max-words 100")
    ]
    with caplog.at_level(logging.INFO):
        report.log()
    assert "13 rows, 12 usable" in caplog.text
    assert f"{d / 'train.tsv'}:14: skipped huge-1: 10000 words" in caplog.text
    with pytest.raises(InputError, match=r"train\.tsv:14: huge-1: 10000 words .*--max-words 100"):
        prepare_snips(PrepareSnipsConfig(corpus_dir=d, output_dir=tmp_path / "m", strict=True))


# ---- item 1: all splits checked before any manifest is written; reproducible bytes -----------


def test_rerun_writes_identical_bytes(prepared):
    before = {name: data for name, (data, _) in _snapshot(prepared.output_dir).items()}
    assert all(data[4:8] == b"\0\0\0\0" for data in before.values())  # gzip mtime 0
    prepare_snips(prepared)
    after = {name: data for name, (data, _) in _snapshot(prepared.output_dir).items()}
    assert after == before


def test_render_nlu_only_false_synthesizes_the_asr_subset_alone(prepared, tmp_path):
    """--render-nlu-only false: the ASR manifests and their audio are byte-identical to those
    of a run that renders every train row; the other train rows are text-only NLU rows (the
    1 s placeholder, no TTS fields, no WAV); the manifests pass validate-manifests in its
    text-only-NLU mode and a second run writes the same bytes."""
    import dataclasses

    from lhotse import load_manifest

    from common.io import NLU_DURATION
    from data_prep.validate import ValidateOptions, validate_manifests

    plan = "train=espeak-ng,flite:awb;dev=espeak-ng;test=espeak-ng"  # TTS fields in custom
    prepared = dataclasses.replace(
        prepared, output_dir=tmp_path / "m1", audio_dir=tmp_path / "a1", tts_plan=plan
    )
    prepare_snips(prepared)
    cfg = dataclasses.replace(
        prepared,
        output_dir=tmp_path / "m2",
        audio_dir=tmp_path / "a2",
        render_nlu_only=False,
    )
    prepare_snips(cfg)
    full, part = _snapshot(prepared.output_dir), _snapshot(cfg.output_dir)
    assert "snips_recordings_train_all.jsonl.gz" in full
    assert "snips_recordings_train_all.jsonl.gz" not in part
    # the audio paths differ by folder only; compare the manifests with the folder replaced
    for name in part:
        if name == "snips_nlu_train.jsonl.gz":
            continue
        a = load_manifest(prepared.output_dir / name).to_dicts()
        b = load_manifest(cfg.output_dir / name).to_dicts()
        strip = str(prepared.audio_dir), str(cfg.audio_dir)
        assert [repr(x).replace(*strip) for x in a] == [repr(x) for x in b], name
    asr_ids = {s.id for s in load_manifest(cfg.output_dir / "snips_supervisions_train.jsonl.gz")}
    nlu_full = load_manifest(prepared.output_dir / "snips_nlu_train.jsonl.gz")
    nlu = load_manifest(cfg.output_dir / "snips_nlu_train.jsonl.gz")
    assert [s.id for s in nlu] == [s.id for s in nlu_full] and len(nlu) > len(asr_ids)
    for s, f in zip(nlu, nlu_full, strict=True):
        assert (s.text, s.custom["intent"], s.custom["slots"]) == (
            f.text,
            f.custom["intent"],
            f.custom["slots"],
        )
        if s.id in asr_ids:
            assert s.duration == f.duration and s.custom == f.custom
        else:
            assert s.duration == NLU_DURATION and "tts_voice" not in s.custom
            assert "tts_voice" in f.custom
    wavs = {p.name.split(".")[0] for p in (cfg.audio_dir / "train").glob("*.wav")}
    assert wavs == asr_ids
    for wav in (cfg.audio_dir / "train").glob("*.wav"):
        assert wav.read_bytes() == (prepared.audio_dir / "train" / wav.name).read_bytes()
    opts = ValidateOptions(manifest_dir=cfg.output_dir, splits=["train", "dev", "test"])
    with pytest.raises(InputError):  # the all-audio check wants snips_recordings_train_all
        validate_manifests(opts)
    validate_manifests(dataclasses.replace(opts, text_only_nlu=True))
    prepare_snips(cfg)
    assert {k: v[0] for k, v in _snapshot(cfg.output_dir).items()} == {
        k: v[0] for k, v in part.items()
    }


def test_read_only_output_fails_before_tts(tmp_path, mini_snips_dir):
    from tests.data_prep.conftest import read_only_dir

    cfg = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir, output_dir=tmp_path / "ro", audio_dir=tmp_path / "audio"
    )
    with read_only_dir(cfg.output_dir), pytest.raises(InputError, match=r"ro: --output-dir is not"):
        prepare_snips(cfg)
    assert not cfg.audio_dir.exists()  # nothing was synthesized


# ---- item 4: reused audio is checked -----------------------------------------------------------


def test_truncated_reused_wav_is_reported_then_resynthesized(prepared):
    before = _snapshot(prepared.output_dir)
    wav = prepared.audio_dir / "train" / "snips-train-3.wav"
    full = wav.read_bytes()
    frames = sf.info(str(wav)).frames
    wav.write_bytes(full[: 44 + (len(full) - 44) // 2])
    assert 0 < sf.info(str(wav)).frames < frames  # libsndfile alone takes it, shorter
    with pytest.raises(
        InputError,
        match=r"snips-train-3\.wav: cannot read audio of utterance snips-train-3: truncated: "
        r"the header declares \d+ bytes of samples, the file holds \d+ \(\d+%\) "
        r"\(delete the file to synthesize it again\)",
    ):
        prepare_snips(prepared)
    assert _snapshot(prepared.output_dir) == before
    wav.unlink()
    prepare_snips(prepared)
    assert sf.info(str(wav)).frames == frames  # the same text, voice, rate and pitch


def test_reused_wav_with_wrong_rate_and_all_problems_reported(prepared, caplog):
    before = _snapshot(prepared.output_dir)
    write_tone(prepared.audio_dir / "test" / "snips-test-2.wav", rate=8000)
    (prepared.audio_dir / "dev" / "snips-valid-0.wav").write_bytes(b"")
    with caplog.at_level(logging.ERROR), pytest.raises(InputError) as e:
        prepare_snips(prepared)
    msg = str(e.value)
    assert "snips-valid-0.wav: cannot read audio of utterance snips-valid-0: " in msg
    assert "(and 1 more unusable audio files, listed above)" in msg
    assert (
        "snips-test-2.wav: cannot read audio of utterance snips-test-2: 8000 Hz, 1 channel(s); "
        "synthesized audio is 16000 Hz mono" in caplog.text
    )
    assert _snapshot(prepared.output_dir) == before


# ---- item 7: TTS output permissions -----------------------------------------------------------


@pytest.mark.parametrize("num_jobs", [1, 2])
def test_tts_wav_gets_ordinary_permissions(tmp_path, num_jobs):
    jobs = [
        TTSJob(f"u{i}", "hello world", tmp_path / "audio" / f"u{i}.wav", Voice("en-us"))
        for i in range(2)
    ]
    old = os.umask(0o022)
    try:
        assert synthesize(jobs, EspeakNG(), num_jobs=num_jobs) == 2
    finally:
        os.umask(old)
    for j in jobs:
        assert stat.S_IMODE(j.out_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == ["u0.wav", "u1.wav"]
