"""SLURP's SLU metrics (rescoring/slurp_metrics.py): hand-computed cases, and score-wer's
``--slu-metrics slurp`` (the default ``snips`` output unchanged)."""

from __future__ import annotations

import gzip
import json

import pytest

from rescoring import score
from rescoring.metrics import UttCounts, add_slu, corpus_metrics
from rescoring.slurp_metrics import (
    SLURP_METRICS,
    SlurpCounts,
    char_distance,
    distance_counts,
    edit_distance,
    entities,
    prf,
    slurp_bootstrap_ci,
    slurp_corpus_metrics,
    span_counts,
    split_intent,
    utt_slurp_counts,
    word_distance,
)
from tests.rescoring.conftest import gold_record, write_lines


def _all(gold, pred):
    """span, word and char (TP, FP, FN) of one utterance's entities."""
    return (
        span_counts(gold, pred),
        distance_counts(gold, pred, "word"),
        distance_counts(gold, pred, "char"),
    )


def _f1(counts):
    return float(prf(*counts)[2])


# --- scenario / action ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "intent, parts",
    [
        ("iot_hue_lightoff", ("iot", "hue_lightoff")),
        ("alarm_set", ("alarm", "set")),
        ("qa_factoid", ("qa", "factoid")),
        ("general", ("general", "")),
    ],
)
def test_split_intent(intent, parts):
    assert split_intent(intent) == parts


def test_scenario_action_intent_counts():
    c = utt_slurp_counts("iot_hue_lightoff", ["x"], None, "iot_hue_lightup", ["x"], ["O"])
    assert (c.has_nlu, c.scenario_correct, c.action_correct, c.intent_correct) == (1, 1, 0, 0)
    assert c.has_slots == 0 and c.span_fp == 0  # no gold slots: intent parts only
    c = utt_slurp_counts("alarm_set", ["x"], ["O"], "calendar_set", ["x"], ["O"])
    assert (c.scenario_correct, c.action_correct, c.intent_correct) == (0, 1, 0)
    c = utt_slurp_counts("iot_hue_lightoff", ["x"], ["O"], "iot_hue_lightoff", ["x"], ["O"])
    assert (c.scenario_correct, c.action_correct, c.intent_correct, c.has_slots) == (1, 1, 1, 1)


# --- entities and distances -------------------------------------------------------------------


def test_entities_from_bio():
    words = "wake me up at five am this week".split()
    tags = ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"]
    assert entities(words, tags) == [("time", "five am"), ("date", "this week")]
    # two adjacent entities of one type stay two; a stray I- starts a span; junk tags are O
    assert entities("a b c d".split(), ["B-date", "B-date", "X", "I-time"]) == [
        ("date", "a"),
        ("date", "b"),
        ("time", "d"),
    ]


def test_distances_by_hand_and_against_jiwer_rapidfuzz():
    jiwer = pytest.importorskip("jiwer")
    lev = pytest.importorskip("rapidfuzz.distance").Levenshtein
    assert word_distance("new york city", "new york") == pytest.approx(1 / 3)
    assert char_distance("new york city", "new york") == pytest.approx(5 / 13)
    assert word_distance("five", "five p m") == 2.0  # WER, not capped at 1
    assert char_distance("five", "five p m") == 0.5
    assert char_distance("", "") == 0.0 and edit_distance("kitten", "sitting") == 3
    pairs = [
        ("new york city", "new york"),
        ("jude", "dude"),
        ("five", "five p m"),
        ("this week", "next week end"),
        ("john", "marry"),
        ("a b c", "c b a"),
    ]
    for g, p in pairs:
        assert word_distance(g, p) == pytest.approx(jiwer.wer(g, p))
        assert char_distance(g, p) == pytest.approx(lev.normalized_distance(g, p))


# --- per-utterance counts (hand-computed) -----------------------------------------------------


def test_exact_match():
    e = [("date", "this week"), ("time", "five am")]
    assert _all(e, list(e)) == ((2, 0, 0), (2, 0, 0), (2, 0, 0))


def test_wrong_type_is_a_miss_and_a_false_alarm():
    assert _all([("date", "monday")], [("time", "monday")]) == ((0, 1, 1), (0, 1, 1), (0, 1, 1))


def test_partial_filler_gets_partial_credit():
    gold, pred = [("place_name", "new york city")], [("place_name", "new york")]
    span, word, char = _all(gold, pred)
    assert span == (0, 1, 1)
    assert word == pytest.approx((1, 1 / 3, 1 / 3)) and _f1(word) == pytest.approx(0.75)
    assert char == pytest.approx((1, 5 / 13, 5 / 13)) and _f1(char) == pytest.approx(13 / 18)
    # SLU-F1 adds the two: TP 2, FP = FN = 1/3 + 5/13 = 28/39 -> P = R = F1 = 2 / (2 + 28/39)
    both = tuple(w + c for w, c in zip(word, char, strict=True))
    assert _f1(both) == pytest.approx(39 / 53)


def test_word_vs_char_level():
    # one wrong word of one: the word level gives no credit, the char level 3/4 of it
    span, word, char = _all([("song_name", "jude")], [("song_name", "dude")])
    assert span == (0, 1, 1)
    assert word == (1, 1.0, 1.0) and _f1(word) == pytest.approx(0.5)
    assert char == (1, 0.25, 0.25) and _f1(char) == pytest.approx(0.8)
    # extra predicted words: a word distance above 1 costs more than a miss
    _, word, char = _all([("time", "five")], [("time", "five p m")])
    assert word == (1, 2.0, 2.0) and _f1(word) == pytest.approx(1 / 3)
    assert char == (1, 0.5, 0.5) and _f1(char) == pytest.approx(2 / 3)


def test_missing_and_extra_entities():
    assert _all([("date", "today")], []) == ((0, 0, 1), (0, 0, 1), (0, 0, 1))
    assert _all([], [("date", "today")]) == ((0, 1, 0), (0, 1, 0), (0, 1, 0))
    gold = [("date", "today")]
    pred = [("date", "today"), ("time", "five am"), ("date", "tomorrow")]
    # "tomorrow": its type's only gold entity is used up -> a plain false positive
    assert _all(gold, pred) == ((1, 2, 0), (1, 2, 0), (1, 2, 0))


def test_several_entities_of_one_type():
    gold = [("person", "john"), ("person", "mary")]
    # each prediction takes the closest unused gold entity of its type, in prediction order
    assert _all(gold, [("person", "mary"), ("person", "john")]) == ((2, 0, 0),) * 3
    span, word, char = _all(gold, [("person", "marry")])
    assert span == (0, 1, 2)
    # char: d(john, marry) = 1, d(mary, marry) = 1/5 -> pairs with mary; john is missed
    assert char == pytest.approx((1, 0.2, 1.2))
    # word: both at distance 1, a tie -> the first gold entity (john); mary is missed
    assert word == (1, 1.0, 2.0)
    # greedy in prediction order, not an optimal matching: "a" takes "a b" (d 1/2), which
    # leaves "c" to "a b" (d 2): FP 2.5, where a <-> c, a b <-> a b would cost 1
    gold = [("t", "a b"), ("t", "c")]
    assert distance_counts(gold, [("t", "a"), ("t", "a b")], "word") == (2, 2.5, 2.5)


def test_prf_zero_conventions():
    assert tuple(map(float, prf(0, 0, 0))) == (0.0, 0.0, 0.0)
    assert tuple(map(float, prf(0, 2, 0))) == (0.0, 0.0, 0.0)
    p, r, f = map(float, prf(1, 1, 3))
    assert (p, r) == (0.5, 0.25) and f == pytest.approx(2 * 0.5 * 0.25 / 0.75)


# --- corpus metrics ---------------------------------------------------------------------------


def _utts():
    w1 = "play hey jude".split()
    w2 = "wake me up at five am".split()
    return [
        ("music_play", w1, ["O", "B-song_name", "I-song_name"], "music_play", "play hey dude".split(),
         ["O", "B-song_name", "I-song_name"]),
        ("alarm_set", w2, ["O"] * 4 + ["B-time", "I-time"], "alarm_query", w2,
         ["O"] * 4 + ["B-time", "I-time"]),
        ("iot_hue_lightoff", ["lights", "off"], None, "iot_hue_lightup", ["lights", "off"],
         ["O", "O"]),
    ]  # fmt: skip


def test_corpus_metrics_by_hand():
    counts = [utt_slurp_counts(*u) for u in _utts()]
    m = slurp_corpus_metrics(counts)
    assert m["scenario_acc"] == pytest.approx(100.0)
    assert m["action_acc"] == pytest.approx(100 / 3)
    assert m["intent_acc"] == pytest.approx(100 / 3)
    # entities: (song_name "hey jude" / "hey dude"), (time "five am" both); utt 3 has no gold slots
    assert m["span_f1"] == pytest.approx(50.0)  # TP 1, FP 1, FN 1
    # word: TP 2, FP = FN = 1/2 -> 80; char: d = 1/8 -> TP 2, FP = FN = 1/8 -> 2 / 2.125
    assert m["slu_f1_word"] == pytest.approx(80.0)
    assert m["slu_f1_char"] == pytest.approx(100 * 2 / 2.125)
    assert m["slu_f1"] == pytest.approx(100 * 4 / 4.625)
    # span F1 is our exact-match slot F1, intent accuracy our intent accuracy
    utts = []
    for gi, gw, gt, pi, pw, pt in _utts():
        u = UttCounts()
        add_slu(u, gi, gw, gt, pi, pw, pt)
        utts.append(u)
    ours = corpus_metrics(utts)
    assert ours["slot_f1"] == pytest.approx(m["span_f1"])
    assert ours["intent_acc"] == pytest.approx(m["intent_acc"])


def test_undefined_and_empty_cases():
    m = slurp_corpus_metrics([SlurpCounts(), SlurpCounts()])  # no NLU at all (text hyps)
    assert all(m[k] is None for k in (*SLURP_METRICS, "intent_acc"))
    assert slurp_bootstrap_ci([SlurpCounts()], "slu_f1", 20, 0) is None
    # gold slots but no entity anywhere: 0, as SLURP's tool prints
    c = utt_slurp_counts("qa_factoid", ["hi"], ["O"], "qa_factoid", ["hi"], ["O"])
    m = slurp_corpus_metrics([c])
    assert m["scenario_acc"] == 100.0 and m["span_f1"] == 0.0 and m["slu_f1"] == 0.0


def test_bootstrap_ci_is_deterministic_and_brackets():
    counts = [utt_slurp_counts(*u) for u in _utts()] * 4
    for name in SLURP_METRICS:
        ci = slurp_bootstrap_ci(counts, name, 200, 3)
        assert ci == slurp_bootstrap_ci(counts, name, 200, 3)
        assert ci[0] <= slurp_corpus_metrics(counts)[name] <= ci[1]


# --- score-wer --------------------------------------------------------------------------------

GOLD = [
    gold_record("s1", "turn the lights off", "iot_hue_lightoff", ["O", "O", "O", "O"]),
    gold_record(
        "s2",
        "wake me up at five am",
        "alarm_set",
        ["O", "O", "O", "O", "B-time", "I-time"],
    ),
    gold_record("s3", "play hey jude", "music_play", ["O", "B-song_name", "I-song_name"]),
]
HYPS = [
    {"id": "s1", "hyp": "turn the lights off", "intent": "iot_hue_lightup", "slots": ["O"] * 4},
    {
        "id": "s2",
        "hyp": "wake me up at five",
        "intent": "alarm_set",
        "slots": ["O", "O", "O", "O", "B-time"],
    },
    {
        "id": "s3",
        "hyp": "play hey dude",
        "intent": "music_play",
        "slots": ["O", "B-song_name", "I-song_name"],
    },
]
# today's metrics-{set}.json keys (the default must not change them)
DEFAULT_KEYS = {
    *UttCounts.__dataclass_fields__,
    *("wer", "rare_wer", "common_wer", "intent_acc", "slot_f1", "utterances", "rare_share"),
    *("ci95", "per_intent", "system", "set", "hyps", "slot_utterances"),
}


def _run(tmp_path, *extra):
    tmp_path.mkdir(exist_ok=True)
    gold = write_lines(tmp_path / "gold.jsonl", GOLD)
    hyps = write_lines(tmp_path / "hyps.jsonl", HYPS)
    (tmp_path / "counts.txt").write_text("turn 9\nthe 9\nplay 9\n")
    out = tmp_path / "out"
    score.main(
        [
            *("--hyps", str(hyps), "--gold", str(gold)),
            *("--word-counts", str(tmp_path / "counts.txt"), "--out-dir", str(out)),
            *("--set-name", "test", "--system", "sys", "--bootstrap-samples", "50", *extra),
        ]
    )
    m = json.loads((out / "metrics-test.json").read_text())
    with gzip.open(out / "per-utt-test.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    manifest = json.loads((out / "set-score-test-sys.json").read_text())
    return m, rows, (out / "rare-wer-test-sys.txt").read_text(), manifest


def test_score_wer_slurp(tmp_path):
    m, rows, summary, manifest = _run(tmp_path, "--slu-metrics", "slurp")
    assert set(m) == DEFAULT_KEYS | {*SLURP_METRICS, "slurp"}
    assert set(m["ci95"]) == {"wer", "rare_wer", "common_wer", "intent_acc", "slot_f1"} | set(
        SLURP_METRICS
    )
    assert m["scenario_acc"] == pytest.approx(100.0)
    assert m["action_acc"] == pytest.approx(200 / 3) == pytest.approx(m["intent_acc"])
    # time "five am" -> "five": word d 1/2, char d 3/7; song_name "hey jude" -> "hey dude":
    # word d 1/2, char d 1/8. span: TP 0, FP 2, FN 2.
    assert m["span_f1"] == 0.0 == m["slot_f1"]
    assert m["slu_f1_word"] == pytest.approx(100 * 2 / 3)  # TP 2, FP = FN = 1
    fc = 3 / 7 + 1 / 8
    assert m["slu_f1_char"] == pytest.approx(100 * 2 / (2 + fc))
    assert m["slu_f1"] == pytest.approx(100 * 4 / (4 + 1 + fc))
    assert m["slurp"]["word_tp"] == 2.0 and m["slurp"]["span_fn"] == 2
    assert m["slurp"]["has_slots"] == 3 and m["slurp"]["scenario_correct"] == 3
    for name in SLURP_METRICS:
        lo, hi = m["ci95"][name]
        assert lo <= m[name] <= hi
    assert [r["slurp"]["action_correct"] for r in rows] == [0, 1, 1]
    assert "SLURP scenario accuracy: 100.00%" in summary and "SLURP SLU-F1: " in summary
    assert manifest["params"]["slu_metrics"] == "slurp"


def test_score_wer_default_output_unchanged(tmp_path):
    m, rows, summary, manifest = _run(tmp_path)
    assert set(m) == DEFAULT_KEYS
    assert set(m["ci95"]) == {"wer", "rare_wer", "common_wer", "intent_acc", "slot_f1"}
    assert all(set(r) == {"id", *UttCounts.__dataclass_fields__} for r in rows)
    assert "SLURP" not in summary and "slu_metrics" not in manifest["params"]
    m2, rows2, summary2, _ = _run(tmp_path / "explicit", "--slu-metrics", "snips")
    assert summary2 == summary and rows2 == rows
    assert {k: v for k, v in m2.items() if k != "hyps"} == {
        k: v for k, v in m.items() if k != "hyps"
    }


def test_bad_slu_metrics_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, "--slu-metrics", "atis")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--slu-metrics must be one of snips, slurp, got 'atis'" in err
