"""score-wer: duplicated or unmatched ids are errors, gold without slots is scored for intent only
(issue 10, item 2)."""

from __future__ import annotations

import json

import pytest

from rescoring import rescore, score
from tests.rescoring.conftest import gold_record, write_lines


def _score(tiny, hyps, gold, *extra, system="sys"):
    score.main(
        [
            "--hyps",
            str(hyps),
            "--gold",
            str(gold),
            "--word-counts",
            str(tiny / "counts.txt"),
            "--out-dir",
            str(tiny / "out"),
            "--set-name",
            "test",
            "--system",
            system,
            "--bootstrap-samples",
            "50",
            *extra,
        ]
    )


def _fails(capsys, fn, *args) -> str:
    with pytest.raises(SystemExit) as e:
        fn(*args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    return err


def _onebest(tiny, rows) -> str:
    return write_lines(tiny / "hyps.jsonl", rows)


ROW1 = {"id": "t1", "hyp": "play hey jude now", "intent": "PlayMusic", "slots": ["O"] * 4}
ROW2 = {"id": "t2", "hyp": "weather in boston", "intent": "GetWeather", "slots": ["O"] * 3}


def test_duplicate_ids_name_both_lines(tiny, capsys):
    hyps = _onebest(tiny, [ROW1, ROW2, {**ROW1, "hyp": "x"}])
    err = _fails(capsys, _score, tiny, hyps, tiny / "gold-test.jsonl")
    assert "hyps.jsonl:3: duplicate utterance id 't1' (first at line 1)" in err
    text = tiny / "hyps.txt"
    text.write_text("t1 play\nt2 weather\nt2 whether\n")
    err = _fails(capsys, _score, tiny, text, tiny / "gold-test.jsonl")
    assert "hyps.txt:3: duplicate utterance id 't2' (first at line 2)" in err
    gold = write_lines(
        tiny / "gold.jsonl",
        [gold_record("t1", "a", "X", ["O"]), gold_record("t1", "b", "X", ["O"])],
    )
    err = _fails(capsys, _score, tiny, hyps, gold)
    assert "gold.jsonl:2: duplicate utterance id 't1' (first at line 1)" in err


def test_unmatched_ids_are_errors(tiny, capsys):
    err = _fails(capsys, _score, tiny, _onebest(tiny, [ROW1]), tiny / "gold-test.jsonl")
    assert "no hypothesis for 1 utterance(s)" in err and "t2" in err
    extra = {**ROW2, "id": "t9"}
    err = _fails(
        capsys, _score, tiny, _onebest(tiny, [ROW1, ROW2, extra]), tiny / "gold-test.jsonl"
    )
    assert "gold-test.jsonl: no gold supervision for 1 utterance(s)" in err and "t9" in err


@pytest.mark.parametrize(
    "row, msg",
    [
        ({**ROW1, "hyp": None}, "hyps.jsonl:1 (t1): field 'hyp' must be a string, got null"),
        ({**ROW1, "hyp": ["play"]}, "hyps.jsonl:1 (t1): field 'hyp' must be a string"),
        ({**ROW1, "intent": 3}, "hyps.jsonl:1 (t1): field 'intent' must be a string, got 3"),
        (
            {k: v for k, v in ROW1.items() if k != "slots"},
            "hyps.jsonl:1 (t1): missing field 'slots'",
        ),
        ({**ROW1, "slots": ["O"]}, "hyps.jsonl:1 (t1): 4 words but 1 predicted slot tags"),
        ({**ROW1, "slots": [None] * 4}, "field 'slots' must be a list of strings"),
        ({**ROW1, "id": None}, "hyps.jsonl:1: field 'id' must be a non-empty string, got null"),
    ],
)
def test_bad_onebest_fields(tiny, capsys, row, msg):
    err = _fails(capsys, _score, tiny, _onebest(tiny, [row, ROW2]), tiny / "gold-test.jsonl")
    assert msg in err


@pytest.mark.parametrize(
    "record, msg",
    [
        ({**gold_record("t1", "a b", "X", None), "text": None}, "field 'text' must be a string"),
        (gold_record("t1", "a b", "X", ["O"]), "'custom.slots' has 1 tags for 2 words"),
        (gold_record("t1", "a b", "X", ["O", 5]), "'custom.slots' must be a list of strings"),
        (gold_record("t1", "a b", ["X"], None), "'custom.intent' must be a string"),
        ({**gold_record("t1", "a b", "X", None), "custom": "X"}, "'custom' must be an object"),
    ],
)
def test_bad_gold_fields(tiny, capsys, record, msg):
    gold = write_lines(tiny / "gold.jsonl", [record])
    err = _fails(capsys, _score, tiny, _onebest(tiny, [ROW1]), gold)
    assert f"gold.jsonl:1 (t1): {msg}" in err or f"gold.jsonl:1 (t1): field {msg}" in err


def test_gold_with_intent_but_no_slots(tiny):
    """The defect: a TypeError when the gold has an intent but no slots."""
    gold = write_lines(
        tiny / "gold.jsonl",
        [
            gold_record("t1", "play hey jude now", "PlayMusic", None),
            gold_record("t2", "weather in boston", "GetWeather", ["O", "O", "B-city"]),
        ],
    )
    hyps = _onebest(
        tiny,
        [
            {**ROW1, "slots": ["O", "B-track", "I-track", "O"]},
            {**ROW2, "slots": ["O", "O", "B-city"]},
        ],
    )
    _score(tiny, hyps, gold)
    m = json.loads((tiny / "out" / "metrics-test.json").read_text())
    assert m["intent_acc"] == 100.0 and m["has_nlu"] == 2
    assert m["slot_f1"] == 100.0 and m["slot_utterances"] == 1  # t1's predicted slots ignored
    summary = (tiny / "out" / "rare-wer-test-sys.txt").read_text()
    assert "slot F1: 100.00%" in summary and "over 1 of 2 utterances with NLU" in summary

    # No slots in the whole corpus: intent accuracy only, slot F1 n/a.
    gold = write_lines(
        tiny / "gold.jsonl",
        [
            gold_record("t1", "play hey jude now", "PlayMusic", None),
            gold_record("t2", "weather in boston", "BookRestaurant", None),
        ],
    )
    _score(tiny, hyps, gold)
    m = json.loads((tiny / "out" / "metrics-test.json").read_text())
    assert m["intent_acc"] == 50.0 and m["slot_f1"] is None and m["slot_utterances"] == 0
    assert "slot F1: n/a  (over 0 of 2" in (tiny / "out" / "rare-wer-test-sys.txt").read_text()


def test_gold_slots_unchanged_when_present(tiny):
    """Good input: every gold utterance has slots -> no note, the same numbers as before."""
    rescore.main(
        [
            "--nbest",
            str(tiny / "nbest-test.jsonl"),
            "--scorer",
            "none",
            "--out-dir",
            str(tiny / "out"),
        ]
    )
    _score(tiny, tiny / "out" / "onebest-test.jsonl.gz", tiny / "gold-test.jsonl")
    m = json.loads((tiny / "out" / "metrics-test.json").read_text())
    assert m["wer"] == pytest.approx(100 * 2 / 7) and m["slot_utterances"] == 0
    assert "over" not in (tiny / "out" / "rare-wer-test-sys.txt").read_text()
