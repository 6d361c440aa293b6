"""extract-slot-lexicon: spans from BIO tags, list limits, the dev/test refusal, read_lexicon."""

from __future__ import annotations

import gzip
import json
import logging
import runpy
import sys
from pathlib import Path

import pytest
from lhotse import SupervisionSegment, SupervisionSet

from common.io import InputError, write_manifest
from common.lexicon import read_lexicon
from data_prep.slot_lexicon import (
    SlotLexiconOptions,
    eval_split_marker,
    extract_slot_lexicons,
    main,
)

# (text, intent, BIO tags): multi-word spans, adjacent spans of one type, stray I- tags
ROWS = [
    ("weather in new york city", "GetWeather", ["O", "O", "B-city", "I-city", "I-city"]),
    ("weather in paris", "GetWeather", ["O", "O", "B-city"]),
    ("is it sunny in paris", "GetWeather", ["O", "O", "B-condition", "O", "B-city"]),
    ("play queen abba", "PlayMusic", ["O", "B-artist", "B-artist"]),  # two spans
    ("play jazz music now", "PlayMusic", ["O", "I-genre", "I-genre", "O"]),  # stray I- starts
    ("play queen jazz", "PlayMusic", ["O", "B-artist", "I-genre"]),  # I- of another type
    ("play some paris jazz", "PlayMusic", ["O", "O", "B-city", "B-genre"]),
    ("book a table", "BookRestaurant", ["O", "O", "O"]),  # an intent without slots
]


def write_nlu(path: Path, rows=ROWS, split: str = "train") -> Path:
    """A text-only NLU SupervisionSet like prepare-snips's ``snips_nlu_<split>.jsonl.gz``."""
    sups = [
        SupervisionSegment(
            id=f"snips-{split}-{i}",
            recording_id=f"snips-{split}-{i}",
            start=0.0,
            duration=1.0,
            text=text,
            custom=custom if isinstance(custom, dict) else {"intent": custom, "slots": tags},
        )
        for i, (text, custom, tags) in enumerate(rows)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(path, SupervisionSet.from_segments(sups))
    return path


@pytest.fixture()
def train_manifest(tmp_path) -> Path:
    return write_nlu(tmp_path / "manifests" / "snips_nlu_train.jsonl.gz")


def run(manifest: Path, out: Path, **kw) -> dict:
    return extract_slot_lexicons(SlotLexiconOptions(nlu_manifest=manifest, out_dir=out, **kw))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_lists_from_bio_spans(train_manifest, tmp_path):
    out = tmp_path / "lang" / "lexicons"
    summary = run(train_manifest, out)
    assert lines(out / "slot-city.txt") == ["paris\t3", "new york city\t1"]
    assert lines(out / "slot-artist.txt") == ["queen\t2", "abba\t1"]  # adjacent B-: two spans
    assert lines(out / "slot-genre.txt") == ["jazz\t2", "jazz music\t1"]  # stray I- start spans
    assert lines(out / "slot-condition.txt") == ["sunny\t1"]
    assert lines(out / "intent-GetWeather.txt") == ["paris\t2", "new york city\t1", "sunny\t1"]
    assert lines(out / "intent-PlayMusic.txt") == [
        "jazz\t2",
        "queen\t2",
        "abba\t1",
        "jazz music\t1",
        "paris\t1",
    ]
    assert (out / "intent-BookRestaurant.txt").read_bytes() == b""  # written, empty
    assert lines(out / "global.txt") == [
        "paris\t3",
        "jazz\t2",
        "queen\t2",
        "abba\t1",
        "jazz music\t1",
        "new york city\t1",
        "sunny\t1",
    ]
    index = json.loads((out / "lexicons.json").read_text())
    assert index == summary
    assert set(index["lists"]) == {
        "global",
        "slot-artist",
        "slot-city",
        "slot-condition",
        "slot-genre",
        "intent-BookRestaurant",
        "intent-GetWeather",
        "intent-PlayMusic",
    }
    assert index["lists"]["global"] == {
        "file": "global.txt",
        "phrases": 7,
        "total_count": 11,
        "distinct_before_limits": 7,
    }
    assert index["source"]["spans"] == 11
    assert index["source"]["utterances"] == len(ROWS)
    assert index["source"]["stray_inside_tags"] == 2
    assert len(index["source"]["sha256"]) == 64
    assert (index["min_count"], index["max_phrases"]) == (1, 0)
    for name, entry in index["lists"].items():  # every list reads back as written
        got = read_lexicon(out / entry["file"])
        assert len(got) == entry["phrases"], name
        assert sum(c for _, c in got) == entry["total_count"], name


def test_min_count_and_max_phrases(train_manifest, tmp_path):
    out = tmp_path / "out"
    summary = run(train_manifest, out, min_count=2)
    assert lines(out / "global.txt") == ["paris\t3", "jazz\t2", "queen\t2"]
    assert lines(out / "slot-artist.txt") == ["queen\t2"]
    assert lines(out / "slot-condition.txt") == []  # written, empty
    assert summary["lists"]["slot-condition"]["distinct_before_limits"] == 1
    run(train_manifest, out, max_phrases=4)
    # the most frequent first; ties alphabetical ("abba" before "jazz music" before "paris")
    assert lines(out / "global.txt") == ["paris\t3", "jazz\t2", "queen\t2", "abba\t1"]
    assert lines(out / "intent-PlayMusic.txt") == [
        "jazz\t2",
        "queen\t2",
        "abba\t1",
        "jazz music\t1",
    ]
    summary = run(train_manifest, out, min_count=2, max_phrases=1)
    assert lines(out / "global.txt") == ["paris\t3"]
    assert summary["lists"]["global"]["total_count"] == 3
    assert (summary["min_count"], summary["max_phrases"]) == (2, 1)


def test_reproducible_bytes(train_manifest, tmp_path):
    out = tmp_path / "out"
    run(train_manifest, out)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    run(train_manifest, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    # a manifest with the rows in another order gives the same lists
    shuffled = write_nlu(tmp_path / "other" / "snips_nlu_train.jsonl.gz", ROWS[::-1])
    run(shuffled, tmp_path / "out2")
    for name, data in first.items():
        if name.endswith(".txt"):
            assert (tmp_path / "out2" / name).read_bytes() == data, name


@pytest.mark.parametrize(
    "relpath",
    [
        "snips_nlu_dev.jsonl.gz",
        "snips_nlu_test.jsonl.gz",
        "snips_nlu_valid.jsonl.gz",
        "SNIPS-NLU-Validation.jsonl",
        "heldout.jsonl.gz",
        "dev/nlu.jsonl.gz",  # Kaldi-style split folder
    ],
)
def test_eval_file_names_are_refused(tmp_path, relpath):
    path = write_nlu(tmp_path / "m" / relpath)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="training NLU manifest only") as e:
        run(path, out)
    assert str(path) in str(e.value)
    assert not out.exists()  # refused before anything is written


def test_eval_manifest_under_a_training_name_is_refused(tmp_path):
    # a dev manifest copied or symlinked to a training name: its ids or target still tell
    copied = write_nlu(tmp_path / "m" / "snips_nlu_train.jsonl.gz", ROWS[:2], split="valid")
    with pytest.raises(InputError, match=r"utterance snips-valid-0: the id marks a 'valid'"):
        run(copied, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
    dev = write_nlu(tmp_path / "m" / "snips_nlu_dev.jsonl.gz", ROWS[:2], split="train")
    link = tmp_path / "m" / "nlu_train.jsonl.gz"
    link.symlink_to(dev)
    with pytest.raises(InputError, match=rf"{link}: its target {dev} marks a 'dev' split"):
        run(link, tmp_path / "out")


def test_prepared_layout_train_only(tiny_manifests, tmp_path):
    """On prepare-snips's layout the train manifest works and dev/test are refused."""
    out = tmp_path / "lexicons"
    summary = run(tiny_manifests / "snips_nlu_train.jsonl.gz", out)
    assert lines(out / "global.txt") == ["jazz\t1"]
    assert summary["source"]["utterances"] == 2
    for split in ("dev", "test"):
        with pytest.raises(InputError, match="dev/test must never feed a lexicon"):
            run(tiny_manifests / f"snips_nlu_{split}.jsonl.gz", out)
    # nothing of dev/test reached a list
    words = {w for p in out.glob("*.txt") for line in lines(p) for w in line.split("\t")[0].split()}
    assert words == {"jazz"}


def test_eval_split_marker():
    assert eval_split_marker("snips_nlu_dev.jsonl.gz") == "dev"
    assert eval_split_marker("snips-test-12") == "test"
    assert eval_split_marker("snips_nlu_train.jsonl.gz") is None
    assert eval_split_marker("contest_latest_devices.jsonl") is None  # whole parts only
    assert eval_split_marker("snips-train-3715") is None


@pytest.mark.parametrize(
    "row, message",
    [
        (("play jazz", "PlayMusic", ["O"]), r"snips-train-1: 1 slot tags for 2 words"),
        (("play jazz", {"slots": ["O", "B-genre"]}, None), r"snips-train-1: no intent"),
        (("play jazz", {"intent": "", "slots": ["O", "O"]}, None), r"snips-train-1: no intent"),
        (("play jazz", {"intent": "PlayMusic"}, None), r"snips-train-1: no slot tags"),
        (("play jazz", "PlayMusic", ["O", "X-genre"]), r"snips-train-1: tag 2 'X-genre'"),
        (("play jazz", "PlayMusic", ["O", "B-"]), r"snips-train-1: tag 2 'B-'"),
        (("play jazz", "PlayMusic", ["O", "B-../x"]), r"snips-train-1: tag 2"),
        (("play jazz", "../PlayMusic", ["O", "O"]), r"snips-train-1: intent '../PlayMusic'"),
    ],
)
def test_bad_supervision_names_the_utterance(tmp_path, row, message):
    path = write_nlu(tmp_path / "snips_nlu_train.jsonl.gz", [ROWS[0], row])
    with pytest.raises(InputError, match=message) as e:
        run(path, tmp_path / "out")
    assert str(e.value).startswith(f"{path}: utterance snips-train-1")


def test_bad_manifest_and_options(tmp_path, train_manifest):
    with pytest.raises(InputError, match="not found"):
        run(tmp_path / "missing_train.jsonl.gz", tmp_path / "out")
    broken = tmp_path / "broken_train.jsonl.gz"
    with gzip.open(broken, "wt") as f:
        f.write('{"id": "a"}\n')
    with pytest.raises(InputError, match=rf"{broken}:1: not a Lhotse supervision"):
        run(broken, tmp_path / "out")
    with pytest.raises(InputError, match="--min-count"):
        run(train_manifest, tmp_path / "out", min_count=0)
    with pytest.raises(InputError, match="--max-phrases"):
        run(train_manifest, tmp_path / "out", max_phrases=-1)


def test_read_lexicon(tmp_path):
    p = tmp_path / "lex.txt"
    p.write_text("new  york\t3\nparis\nboston\t 2\n", encoding="utf-8")
    assert read_lexicon(p) == [("new york", 3), ("paris", 1), ("boston", 2)]
    (tmp_path / "empty.txt").write_bytes(b"")
    assert read_lexicon(tmp_path / "empty.txt") == []
    many = tmp_path / "many.txt"
    many.write_text("".join(f"w{i}\n" for i in range(5)))
    assert len(read_lexicon(many, max_phrases=None)) == 5
    with pytest.raises(InputError, match=rf"{many}:4: more than 3 phrases"):
        read_lexicon(many, max_phrases=3)


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("paris\t1\n\nboston\t1\n", 2, "empty line"),
        ("paris\t1\n   \n", 2, "empty line"),
        ("paris\t1\n \t4\n", 2, "empty phrase"),
        ("paris\tmany\n", 1, "count 'many' of 'paris' is not a positive integer"),
        ("paris\t0\n", 1, "count '0' of 'paris' is not a positive integer"),
        ("paris\t-2\n", 1, "count '-2' of 'paris' is not a positive integer"),
        ("paris\t1.5\n", 1, "count '1.5' of 'paris' is not a positive integer"),
        ("paris\t\n", 1, "count '' of 'paris' is not a positive integer"),
        ("paris\t1\tx\n", 1, "2 TABs"),
        (
            "new york\t2\nparis\t1\nnew  york\t1\n",
            3,
            "duplicate phrase 'new york' \\(first on line 1\\)",
        ),
    ],
)
def test_read_lexicon_errors_name_file_and_line(tmp_path, text, line, message):
    p = tmp_path / "lex.txt"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{p}:{line}: {message}"):
        read_lexicon(p)


def test_read_lexicon_default_limit(tmp_path):
    p = tmp_path / "huge.txt"
    p.write_text("".join(f"w{i}\t1\n" for i in range(100_001)))
    with pytest.raises(InputError, match=rf"{p}:100001: more than 100000 phrases"):
        read_lexicon(p)


def test_main(train_manifest, tmp_path, capsys):
    out = tmp_path / "out"
    main(["--nlu-manifest", str(train_manifest), "--out-dir", str(out), "--max-phrases", "2"])
    assert lines(out / "global.txt") == ["paris\t3", "jazz\t2"]
    assert json.loads((out / "lexicons.json").read_text())["max_phrases"] == 2


@pytest.mark.parametrize(
    "case, message",
    [
        ("dev", "snips_nlu_dev.jsonl.gz: the file name marks a 'dev' split"),
        ("bad_slots", "utterance snips-train-0: 1 slot tags for 3 words"),
        ("min_count", "--min-count must be at least 1"),
    ],
)
def test_main_bad_input_exits_2(tmp_path, capsys, case, message):
    args = []
    if case == "dev":
        manifest = write_nlu(tmp_path / "snips_nlu_dev.jsonl.gz")
    elif case == "bad_slots":
        manifest = write_nlu(
            tmp_path / "snips_nlu_train.jsonl.gz", [("play some jazz", "X", ["O"])]
        )
    else:
        manifest = write_nlu(tmp_path / "snips_nlu_train.jsonl.gz")
        args = ["--min-count", "0"]
    with pytest.raises(SystemExit) as exc:
        main(["--nlu-manifest", str(manifest), "--out-dir", str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]  # besides the log lines
    assert len(errors) == 1
    assert errors[0].startswith("extract-slot-lexicon: error: ")
    assert message in errors[0]


def test_console_script_refuses_dev(tmp_path, monkeypatch, capsys):
    """The installed script (pip's wrapper around main), run in this interpreter: a fresh one
    would spend ~3 s importing lhotse/torch; the recipe tests start it as a process of its own."""
    manifest = write_nlu(tmp_path / "snips_nlu_test.jsonl.gz")
    exe = Path(sys.executable).parent / "extract-slot-lexicon"
    argv = [str(exe), "--nlu-manifest", str(manifest), "--out-dir", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() configures the root logger
    try:
        with pytest.raises(SystemExit) as exc:
            runpy.run_path(str(exe), run_name="__main__")
    finally:
        root.handlers[:], root.level = handlers, level
    stderr = capsys.readouterr().err
    assert exc.value.code == 2
    assert stderr.splitlines()[-1].startswith("extract-slot-lexicon: error: ")
    assert "marks a 'test' split" in stderr
    assert not (tmp_path / "out").exists()
