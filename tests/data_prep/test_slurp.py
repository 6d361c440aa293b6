"""prepare-slurp on a tiny corpus in SLURP's own file layout and format (FLACs from a tone).

The rows follow pswietojanski/slurp ``dataset/slurp/*.jsonl`` (all fields, the ``tokens`` and
``entities`` included) and ``metadata.json``; audio is laid out as ``download_audio.sh``
unpacks it (``audio/slurp_real``, ``audio/slurp_synth``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest
from lhotse.qa import validate_recordings_and_supervisions

from common.io import InputError
from data_prep.checks import recording_audio_problems
from data_prep.slurp import PrepareSlurpConfig, main, prepare_slurp
from data_prep.slurp_jsonl import parse_slurp_row
from data_prep.validate import nlu_supervision_problems


def _rec(file: str, wer: float = 0.0) -> dict:
    return {"file": file, "wer": wer, "ent_wer": 0.0, "status": "correct"}


def _row(sid, sentence, annotation, scenario, action, files, entities=(), intent=None) -> dict:
    """One SLURP object, fields in upstream order."""
    return {
        "slurp_id": sid,
        "sentence": sentence,
        "sentence_annotation": annotation,
        "intent": intent or f"{scenario}_{action}",
        "action": action,
        "tokens": [
            {"surface": t, "id": i, "lemma": t, "pos": "NN"} for i, t in enumerate(sentence.split())
        ],
        "scenario": scenario,
        "recordings": [_rec(f) for f in files],
        "entities": [{"span": list(span), "type": t} for span, t in entities],
    }


TRAIN = [
    # adjacent entities
    _row(
        13804,
        "wake me up at five am this week",
        "wake me up at [time : five am] [date : this week]",
        "alarm",
        "set",
        ["audio-1490359569-headset.flac", "audio-1490359569.flac"],
        [((4, 5), "time"), ((6, 7), "date")],
    ),
    # digits and punctuation inside entities, punctuation outside
    _row(
        4402,
        "remind me at 7:30 pm on feb. 21st, please",
        "remind me at [time : 7:30 pm] on [date : feb. 21st], please",
        "calendar",
        "set",
        ["audio-1502200001-headset.flac", "audio-1502200001.flac"],
        [((3, 4), "time"), ((6, 7), "date")],
    ),
    # an entity glued to outside text
    _row(
        500,
        "play john's playlist",
        "play [person : john]'s playlist",
        "play",
        "music",
        ["audio-1490000500-headset.flac"],
        [((1,), "person")],
    ),
    # unannotated; the upstream quirk intent == action (test.jsonl, slurp_id 962)
    _row(
        962,
        "increase the brightness of the lights",
        "increase the brightness of the lights",
        "iot",
        "hue_lightup",
        ["audio-1490356953-headset.flac"],
        intent="hue_lightup",
    ),
    # adjacent entities of one type stay two spans
    _row(
        7001,
        "set meetings for monday tuesday",
        "set meetings for [date : monday] [date : tuesday]",
        "calendar",
        "set",
        ["audio-1497000001.flac"],
        [((3,), "date"), ((4,), "date")],
    ),
]
DEVEL = [
    _row(
        9054,
        "event reminder mona tuesday",
        "event reminder [event_name : mona] [date : tuesday]",
        "calendar",
        "set",
        ["audio-1497872916-headset.flac", "audio-1497872916.flac"],
        [((2,), "event_name"), ((3,), "date")],
    ),
    _row(
        6469,
        "anything on your mind",
        "anything on your mind",
        "general",
        "quirky",
        ["audio-1497887494-headset.flac", "audio-1497887494.flac"],
    ),
]
TEST = [
    _row(
        281,
        "what is the exchange rate of us dollar to pound sterling",
        "what is the [news_topic : exchange rate of us dollar to pound sterling]",
        "news",
        "query",
        ["audio-1490105767-headset.flac", "audio-1490105767.flac"],
        [((3, 4, 5, 6, 7, 8, 9, 10), "news_topic")],
    ),
]
SYNTHETIC = [
    _row(
        20001,
        "turn the lights off",
        "turn the lights off",
        "iot",
        "hue_lightoff",
        ["audio-1590160754048Ccloa-synth.flac"],
    ),
]
METADATA = {
    "13804": {
        "nlub_id": 1,
        "recordings": {
            "audio-1490359569-headset.flac": {"ansid": 1, "recid": 2, "usrid": "FO-460"},
            "audio-1490359569.flac": {"ansid": 1, "recid": 2, "usrid": "FO-460"},
        },
        "sentence_normalised": "wake me up at five am this week",
        "status": "correct",
    }
}


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write_slurp_corpus(root: Path, audio: bool = True) -> Path:
    """The tiny corpus: ``dataset/slurp/*.jsonl``, ``metadata.json`` and FLACs in ``audio/``."""
    ds = root / "dataset" / "slurp"
    ds.mkdir(parents=True)
    for name, rows in (
        ("train", TRAIN),
        ("devel", DEVEL),
        ("test", TEST),
        ("train_synthetic", SYNTHETIC),
    ):
        (ds / f"{name}.jsonl").write_text(_jsonl(rows), encoding="utf-8")
    (ds / "metadata.json").write_text(json.dumps(METADATA), encoding="utf-8")
    if audio:
        rng = np.random.default_rng(0)
        for folder, rows in (("slurp_real", TRAIN + DEVEL + TEST), ("slurp_synth", SYNTHETIC)):
            d = root / "audio" / folder
            d.mkdir(parents=True)
            for i, r in enumerate(rows):
                for j, rec in enumerate(r["recordings"]):
                    n = 3200 + 160 * (i + j)  # 0.2 s and up at 16 kHz
                    x = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)
                    x += 0.01 * rng.standard_normal(n)
                    sf.write(str(d / rec["file"]), x.astype(np.float32), 16000, format="FLAC")
    return root


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() replaces the root logger's handlers (one writes to this test's captured stderr);
    put pytest's back so later tests log normally."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_slurp_corpus(tmp_path / "slurp")


def _cfg(corpus: Path, out: Path, **kw) -> PrepareSlurpConfig:
    return PrepareSlurpConfig(corpus_dir=corpus, output_dir=out, **kw)


def _snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and inode of every output (an atomic rewrite changes the inode)."""
    return {p.name: (p.read_bytes(), p.stat().st_ino) for p in sorted(d.iterdir())}


def _error_line(capsys) -> str:
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("prepare-slurp: error:")
    ]
    assert len(lines) == 1, lines
    return lines[0]


# ---- the annotation -> BIO rules ------------------------------------------------------------


@pytest.mark.parametrize(
    "row, text, slots",
    [
        (TRAIN[0], "wake me up at five am this week", "O O O O B-time I-time B-date I-date"),
        (
            TRAIN[1],
            "remind me at seven thirty p m on february twenty first please",
            "O O O B-time I-time I-time I-time O B-date I-date I-date O",
        ),
        (TRAIN[2], "play john's playlist", "O B-person O"),
        (TRAIN[3], "increase the brightness of the lights", "O O O O O O"),
        (TRAIN[4], "set meetings for monday tuesday", "O O O B-date B-date"),
        (
            TEST[0],
            "what is the exchange rate of us dollar to pound sterling",
            "O O O B-news_topic" + " I-news_topic" * 7,
        ),
    ],
    ids=["adjacent", "digits-punctuation", "glued", "unannotated", "same-type", "long"],
)
def test_annotation_to_bio(row, text, slots):
    r = parse_slurp_row(row)
    assert " ".join(r.words) == text
    assert r.slots == slots.split()
    assert r.intent == f"{row['scenario']}_{row['action']}"


def _bad(**changes) -> dict:
    return TRAIN[0] | changes


@pytest.mark.parametrize(
    "row, reason",
    [
        (
            _bad(sentence_annotation="wake me up at [time : five am [date : this week]"),
            "nested '\\['",
        ),
        (_bad(sentence_annotation="wake me up at [time : five am this week"), "unbalanced '\\['"),
        (_bad(sentence_annotation="wake me up at time : five am] this week"), "unbalanced '\\]'"),
        (_bad(sentence_annotation="wake me up at [time five am] this week"), "malformed entity"),
        (_bad(sentence_annotation="wake me up at [time : ] five am this week"), "has no words"),
        (
            _bad(sentence_annotation="wake me up at [time : six am] [date : this week]"),
            "entity words do not match the sentence.*word 5: 'six' in the annotation, 'five'",
        ),
        (_bad(intent="alarm_query"), "intent 'alarm_query' is neither scenario_action"),
        (_bad(scenario="Alarm Clock"), "malformed scenario 'Alarm Clock'"),
        (_bad(action=None), "malformed action None"),
        (_bad(slurp_id="x1"), "malformed slurp_id 'x1'"),
        (_bad(recordings=[{"file": "../audio.flac"}]), "malformed recordings entry"),
        (_bad(sentence=" "), "empty or missing sentence"),
    ],
)
def test_unusable_rows(row, reason):
    with pytest.raises(ValueError, match=reason):
        parse_slurp_row(row)


# ---- the manifests --------------------------------------------------------------------------


def test_manifests_load_validate_and_align(corpus, tmp_path):
    out = tmp_path / "m"
    prepare_slurp(_cfg(corpus, out))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            f"slurp_{kind}_{s}.jsonl.gz"
            for kind in ("recordings", "supervisions", "nlu")
            for s in ("train", "dev", "test")
        ]
        + ["slurp_intents.txt", "slurp_slot_tags.txt"]
    )
    intents = (out / "slurp_intents.txt").read_text().split()
    assert intents == sorted(
        [
            "alarm_set",
            "calendar_set",
            "play_music",
            "iot_hue_lightup",
            "general_quirky",
            "news_query",
        ]
    )
    tags = (out / "slurp_slot_tags.txt").read_text().split()
    assert "O" in tags and "B-date" in tags and "I-news_topic" in tags
    for split, rows in (("train", TRAIN), ("dev", DEVEL), ("test", TEST)):
        recs = load_manifest(out / f"slurp_recordings_{split}.jsonl.gz")
        sups = load_manifest(out / f"slurp_supervisions_{split}.jsonl.gz")
        nlu = load_manifest(out / f"slurp_nlu_{split}.jsonl.gz")
        validate_recordings_and_supervisions(recs, sups)
        assert nlu_supervision_problems(sups, set(intents), split) == []
        assert nlu_supervision_problems(nlu, set(intents), split) == []
        assert all(set(s.custom["slots"]) <= set(tags) for s in sups)
        for rec in recs:  # what validate-manifests checks of the audio
            assert recording_audio_problems(rec, read_samples="always") == []
            assert rec.sampling_rate == 16000 and rec.num_channels == 1
        assert [s.id for s in nlu] == [f"slurp-{split}-{r['slurp_id']}" for r in rows]
        expected = [
            f"slurp-{split}-{r['slurp_id']}-{f['file'][:-5]}" for r in rows for f in r["recordings"]
        ]
        assert [s.id for s in sups] == expected == [r.id for r in recs]
        for s in nlu:
            assert len(s.custom["slots"]) == len(s.text.split())
    sups = load_manifest(out / "slurp_supervisions_train.jsonl.gz")
    head = sups["slurp-train-13804-audio-1490359569-headset"]
    far = sups["slurp-train-13804-audio-1490359569"]
    assert head.text == far.text == "wake me up at five am this week"
    assert head.custom == {
        "intent": "alarm_set",
        "scenario": "alarm",
        "action": "set",
        "slots": ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"],
        "slurp_id": 13804,
        "file": "audio-1490359569-headset.flac",
        "mic": "headset",
        "status": "correct",
        "wer": 0.0,
        "ent_wer": 0.0,
    }
    assert far.custom["mic"] == "farfield"
    assert head.speaker == far.speaker == "FO-460"
    assert sups["slurp-train-962-audio-1490356953-headset"].custom["intent"] == "iot_hue_lightup"
    assert sups["slurp-train-962-audio-1490356953-headset"].speaker is None
    # reproducible: gzip mtime 0, and a re-run writes the same bytes
    data = (out / "slurp_nlu_dev.jsonl.gz").read_bytes()
    assert data[4:8] == b"\0\0\0\0"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    prepare_slurp(_cfg(corpus, out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("mic", ["headset", "farfield"])
def test_mic_filter(corpus, tmp_path, mic):
    out = tmp_path / "m"
    prepare_slurp(_cfg(corpus, out, mic=mic, splits=("dev",)))
    sups = load_manifest(out / "slurp_supervisions_dev.jsonl.gz")
    files = [f["file"] for r in DEVEL for f in r["recordings"]]
    want = [f for f in files if ("-headset" in f) == (mic == "headset")]
    assert [s.custom["file"] for s in sups] == want
    assert {s.custom["mic"] for s in sups} == {mic}
    assert len(load_manifest(out / "slurp_nlu_dev.jsonl.gz")) == len(DEVEL)  # NLU: every sentence


def test_synthetic_and_max_per_split(corpus, tmp_path):
    out = tmp_path / "m"
    prepare_slurp(
        _cfg(corpus, out, splits=("train",), include_synthetic=True, mic="headset", max_per_split=2)
    )
    nlu = load_manifest(out / "slurp_nlu_train.jsonl.gz")
    assert len(nlu) == 2
    syn = load_manifest(out / "slurp_supervisions_train_synthetic.jsonl.gz")
    assert [s.id for s in syn] == ["slurp-train_synthetic-20001-audio-1590160754048Ccloa-synth"]
    assert syn[0].custom["mic"] == "synthetic"  # kept whatever --mic says
    rec = load_manifest(out / "slurp_recordings_train_synthetic.jsonl.gz")[0]
    assert "slurp_synth" in rec.sources[0].source


def test_missing_audio_folder_writes_nlu_and_says_what_to_download(tmp_path, capsys):
    corpus = write_slurp_corpus(tmp_path / "slurp", audio=False)
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as exc:
        main(["--corpus-dir", str(corpus), "--output-dir", str(out)])
    assert exc.value.code == 2
    line = _error_line(capsys)
    assert re.search(
        r"no SLURP audio: .*slurp/audio/slurp_real not found\. Download slurp_real\.tar\.gz "
        r"from the SLURP release .*zenodo.* unpack it in .*slurp/audio/",
        line,
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"slurp_nlu_{s}.jsonl.gz" for s in ("train", "dev", "test")]
        + ["slurp_intents.txt", "slurp_slot_tags.txt"]
    )
    with pytest.raises(SystemExit, match="2"):
        main(["--corpus-dir", str(corpus), "--output-dir", str(out), "--include-synthetic", "true"])
    assert "slurp_real.tar.gz and slurp_synth.tar.gz" in _error_line(capsys)
    main(["--corpus-dir", str(corpus), "--output-dir", str(out), "--text-only", "true"])


# ---- bad input: one line naming file:line and slurp_id, earlier outputs kept ----------------


@pytest.fixture()
def prepared(corpus, tmp_path):
    """A corpus, its manifests from a good run and their snapshot."""
    out = tmp_path / "m"
    prepare_slurp(_cfg(corpus, out))
    return corpus, out, _snapshot(out)


def _args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--corpus-dir", str(corpus), "--output-dir", str(out), *extra]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"sentence_annotation": "set meetings for [date : monday [date : tuesday]"}, "nested"),
        ({"sentence_annotation": "set meetings for [date : monday] [date : tuesday"}, "unbalanced"),
        (
            {"sentence_annotation": "set meetings for [date : friday] [date : tuesday]"},
            "entity words do not match the sentence",
        ),
        ({"intent": "calendar-set"}, "intent 'calendar-set' is neither"),
        ({"scenario": "Calendar"}, "malformed scenario"),
    ],
    ids=["nested", "unbalanced", "words", "intent", "scenario"],
)
def test_bad_row_strict_exit_2_and_outputs_survive(prepared, capsys, change, reason):
    corpus, out, before = prepared
    train = corpus / "dataset/slurp/train.jsonl"
    train.write_text(_jsonl(TRAIN[:4] + [TRAIN[4] | change]), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(_args(corpus, out, "--strict", "true"))
    assert exc.value.code == 2
    line = _error_line(capsys)
    assert re.match(
        rf"prepare-slurp: error: {re.escape(str(train))}:5: slurp_id 7001: .*{reason}", line
    ), line
    assert _snapshot(out) == before


def test_bad_row_is_skipped_and_logged_by_default(prepared, caplog):
    corpus, out, _ = prepared
    train = corpus / "dataset/slurp/train.jsonl"
    bad = TRAIN[4] | {"sentence_annotation": "set meetings for [date : monday"}
    train.write_text(_jsonl([bad] + TRAIN[:4]), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        prepare_slurp(_cfg(corpus, out))
    assert f"{train}:1: skipped slurp_id 7001: unbalanced '['" in caplog.text
    assert "5 rows, 4 usable, 1 skipped" in caplog.text
    ids = {s.custom["slurp_id"] for s in load_manifest(out / "slurp_nlu_train.jsonl.gz")}
    assert ids == {13804, 4402, 500, 962}


def _break_flac(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(b"fLaC" + b"\x00garbage" * 8)
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["missing", "garbage", "empty"])
def test_bad_audio_exit_2_names_flac_line_and_id(prepared, capsys, how):
    corpus, out, before = prepared
    flac = corpus / "audio/slurp_real/audio-1490105767.flac"  # test split, after train and dev
    _break_flac(flac, how)
    with pytest.raises(SystemExit) as exc:
        main(_args(corpus, out))
    assert exc.value.code == 2
    line = _error_line(capsys)
    test_jsonl = corpus / "dataset/slurp/test.jsonl"
    assert line.startswith(
        f"prepare-slurp: error: {flac}: cannot read audio of slurp_id 281 ({test_jsonl}:1): "
    ), line
    assert _snapshot(out) == before
    # --skip-bad-audio: the others are kept, the bad one listed
    main(_args(corpus, out, "--skip-bad-audio", "true"))
    ids = [s.id for s in load_manifest(out / "slurp_supervisions_test.jsonl.gz")]
    assert ids == ["slurp-test-281-audio-1490105767-headset"]


def test_malformed_json_line_names_file_and_line(prepared, capsys):
    corpus, out, before = prepared
    dev = corpus / "dataset/slurp/devel.jsonl"
    dev.write_text(_jsonl(DEVEL) + '{"slurp_id": 1, "sentence": \n', encoding="utf-8")
    with pytest.raises(SystemExit, match="2"):
        main(_args(corpus, out))
    assert re.match(
        rf"prepare-slurp: error: {re.escape(str(dev))}:3: invalid JSON", _error_line(capsys)
    )
    assert _snapshot(out) == before


def test_repeated_recording_file_is_skipped_or_fails_when_strict(prepared, capsys):
    corpus, out, before = prepared
    train = corpus / "dataset/slurp/train.jsonl"
    twin = TRAIN[4] | {"slurp_id": 7002, "recordings": [_rec("audio-1497000001.flac")]}
    train.write_text(_jsonl(TRAIN + [twin]), encoding="utf-8")
    with pytest.raises(SystemExit, match="2"):
        main(_args(corpus, out, "--strict", "true"))
    assert re.search(
        r"train\.jsonl:6: slurp_id 7002: recording audio-1497000001\.flac already used by "
        r"slurp_id 7001 \(line 5\)$",
        _error_line(capsys),
    )
    assert _snapshot(out) == before
    main(_args(corpus, out))  # (main's logging goes to stderr, not to caplog)
    assert (
        "train.jsonl:6: slurp_id 7002: skipped recording audio-1497000001.flac already used by "
        "slurp_id 7001" in capsys.readouterr().err
    )
    sups = load_manifest(out / "slurp_supervisions_train.jsonl.gz")
    assert not [s for s in sups if s.custom["slurp_id"] == 7002]
    assert len(load_manifest(out / "slurp_nlu_train.jsonl.gz")) == 6


def test_option_errors(corpus, tmp_path, capsys):
    with pytest.raises(InputError, match="--mic 'near': expected one of all, headset, farfield"):
        prepare_slurp(_cfg(corpus, tmp_path / "m", mic="near"))
    with pytest.raises(InputError, match="--splits: unknown SLURP split 'valid'"):
        prepare_slurp(_cfg(corpus, tmp_path / "m", splits=("valid",)))
    with pytest.raises(InputError, match="missing SLURP file dataset/slurp/test.jsonl"):
        (corpus / "dataset/slurp/test.jsonl").unlink()
        prepare_slurp(_cfg(corpus, tmp_path / "m"))
    with pytest.raises(SystemExit, match="2"):
        main(["--output-dir", str(tmp_path / "m")])
    assert "--corpus-dir is required" in _error_line(capsys)


def test_validate_manifests_text_only_nlu(corpus, tmp_path, monkeypatch):
    """validate-manifests --prefix slurp: the NLU manifests have no recordings (one per
    sentence), so --text-only-nlu checks their NLU fields alone; without it they fail."""
    from data_prep.validate import ValidateOptions, validate_manifests

    out = tmp_path / "m"
    prepare_slurp(_cfg(corpus, out))
    monkeypatch.chdir(tmp_path)  # audio paths may be relative to the work dir
    n = validate_manifests(ValidateOptions(manifest_dir=out, prefix="slurp", text_only_nlu=True))
    assert n == sum(len(r["recordings"]) + 1 for r in TRAIN + DEVEL + TEST)
    with pytest.raises(ValueError, match="slurp_recordings_train_all"):
        validate_manifests(ValidateOptions(manifest_dir=out, prefix="slurp"))
