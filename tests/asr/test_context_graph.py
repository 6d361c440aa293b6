"""Context graph (asr/context_graph.py): icefall's ContextGraph semantics on hand-built cases and
against a brute-force reference; lexicon and per-utterance map reading; list selection rules."""

from __future__ import annotations

import logging
import random

import pytest

from asr.context_graph import (
    ContextBiasing,
    ContextGraph,
    Phrase,
    lexicon_files,
    read_context_map,
    read_lexicon,
    tokenize_phrases,
)
from common.io import InputError

A, B, C, D, X = 3, 4, 5, 6, 7  # token ids


def walk(graph: ContextGraph, seq):
    """Per-token deltas, the final state and the finalize delta."""
    state, deltas = graph.root, []
    for tok in seq:
        delta, state, _ = graph.forward_one_step(state, tok)
        deltas.append(delta)
    end, root = graph.finalize(state)
    assert root is graph.root
    return deltas, state, end


# ---------------------------------------------------------------------------------------------
# icefall's own cases (icefall/context_graph.py, __main__, strict mode)

ICEFALL_PHRASES = ["S", "HE", "SHE", "SHELL", "HIS", "HERS", "HELLO", "THIS", "THEM"]
ICEFALL_DEFAULT = {  # context score 1 per token
    "HEHERSHE": 14,  # "HE", "HE", "HERS", "S", "SHE", "HE"
    "HERSHE": 12,
    "HISHE": 9,
    "SHED": 6,
    "SHELF": 6,
    "HELL": 2,
    "HELLO": 7,
    "DHRHISQ": 4,
    "THEN": 2,
}
ICEFALL_CUSTOM = {  # per-phrase per-token score round(5 / len(phrase), 2)
    "HEHERSHE": 35.84,
    "HERSHE": 30.84,
    "HISHE": 24.18,
    "SHED": 18.34,
    "SHELF": 18.34,
    "HELL": 5,
    "HELLO": 13,
    "DHRHISQ": 10.84,
    "THEN": 5,
}


@pytest.mark.parametrize("custom", [False, True])
def test_icefall_reference_table(custom):
    scores = [round(5 / len(s), 2) for s in ICEFALL_PHRASES] if custom else None
    graph = ContextGraph(1.0).build(
        [[ord(c) for c in s] for s in ICEFALL_PHRASES], ICEFALL_PHRASES, scores
    )
    for query, expected in (ICEFALL_CUSTOM if custom else ICEFALL_DEFAULT).items():
        deltas, _, end = walk(graph, [ord(c) for c in query])
        assert round(sum(deltas) + end, 2) == expected, query


# ---------------------------------------------------------------------------------------------
# hand-built cases


def test_single_phrase_full_match_and_completion_bonus():
    graph = ContextGraph(1.5).build([[A, B, C]], ["a b c"])
    state, deltas = graph.root, []
    for tok in (A, B):
        delta, state, matched = graph.forward_one_step(state, tok)
        deltas.append(delta)
        assert matched is None
    delta, state, matched = graph.forward_one_step(state, C)
    assert deltas == [1.5, 1.5]
    # the last token's bonus plus the completion bonus (the phrase's accumulated bonus)
    assert delta == 1.5 + 3 * 1.5
    assert matched is state and matched.phrase == "a b c" and state.is_end
    end, _ = graph.finalize(state)
    assert end == -3 * 1.5  # the provisional per-token bonus goes back; the completion stays
    assert sum(deltas) + delta + end == 3 * 1.5


def test_failed_partial_match_gives_back_its_bonus():
    graph = ContextGraph(1.0).build([[A, B, C]])
    deltas, state, end = walk(graph, [A, B, X])
    assert deltas == [1.0, 1.0, -2.0]  # back to the root's cumulative score
    assert state is graph.root and end == 0.0
    # a failure that falls back to a shorter match keeps only the fallback node's bonus
    graph = ContextGraph(1.0).build([[A, B, C], [B, D]])
    state = graph.root
    cum = 0.0
    for tok in (A, B):
        delta, state, _ = graph.forward_one_step(state, tok)
        cum += delta
    assert cum == 2.0 and state.fail is graph.root.next[B]
    delta, state, matched = graph.forward_one_step(state, D)
    # A B -> fail to B -> B D completes: refund A's bonus, +1 for D, +2 completion of "b d"
    assert delta == 2.0 - 2.0 + 2.0
    assert matched is state and state is graph.root.next[B].next[D]
    assert cum + delta - state.output_score == state.node_score


def test_overlapping_phrases_follow_fail_links():
    graph = ContextGraph(1.0).build([[A, B, C], [B, C, D]])
    abc = graph.root.next[A].next[B].next[C]
    bc = graph.root.next[B].next[C]
    assert abc.fail is bc and bc.fail is graph.root and abc.output is None
    deltas, state, end = walk(graph, [A, B, C, D])
    assert deltas == [1.0, 1.0, 1.0 + 3.0, 3.0 - 3.0 + 3.0]
    assert state is bc.next[D] and end == -3.0
    assert sum(deltas) + end == 6.0  # both phrases, each its 3 tokens' bonus


def test_nested_phrases_share_outputs():
    # "h e" inside "s h e": completing "she" also completes "he" (output link)
    graph = ContextGraph(1.0).build([[B, C], [A, B, C]])
    she = graph.root.next[A].next[B].next[C]
    assert she.output is graph.root.next[B].next[C]
    assert she.output_score == 3.0 + 2.0
    deltas, _, end = walk(graph, [A, B, C])
    assert sum(deltas) + end == 5.0


def test_finalize_refunds_unfinished_match():
    graph = ContextGraph(2.0).build([[A, B, C]])
    deltas, state, end = walk(graph, [A, B])
    assert deltas == [2.0, 2.0] and end == -4.0 and state.level == 2
    assert sum(deltas) + end == 0.0


def test_duplicate_phrases_are_one_phrase():
    once = ContextGraph(1.0).build([[A, B]])
    twice = ContextGraph(1.0).build([[A, B], [A, B]])
    assert twice.num_phrases == 1 and twice.num_nodes == once.num_nodes == 3
    for seq in ([A, B], [A, B, A, B], [A, X, B]):
        assert walk(once, seq)[0] == walk(twice, seq)[0]


def test_shared_prefix_takes_the_larger_bonus_whatever_the_order():
    g1 = ContextGraph(1.0).build([[A, B], [A, C]], scores=[1.0, 3.0])
    g2 = ContextGraph(1.0).build([[A, C], [A, B]], scores=[3.0, 1.0])
    for g in (g1, g2):
        assert g.root.next[A].token_score == 3.0
        assert g.root.next[A].next[B].node_score == 4.0


def test_step_scores_row_equals_forward_one_step():
    rng = random.Random(1)
    graphs = [ContextGraph(0.7).build([[A, B, C], [B, C, D], [C]])]
    for _ in range(20):
        phrases = [[rng.choice((A, B, C, D)) for _ in range(rng.randint(1, 5))] for _ in range(6)]
        graphs.append(ContextGraph(rng.uniform(0.1, 3)).build(phrases))
    for graph in graphs:
        for state in graph.nodes:
            row = graph.step_scores(state, 10, blank_id=0)
            assert row.shape == (10,) and row[0] == 0.0
            for tok in range(1, 10):
                assert abs(float(row[tok]) - graph.forward_one_step(state, tok)[0]) < 1e-5


def _reference(phrases: list[tuple[int, ...]], bonus: float, seq: list[int]):
    """Brute force: (cumulative score after each token, final score). Each occurrence of a phrase
    ending at a token earns len(phrase) * bonus for good; the longest suffix that is a phrase
    prefix holds its provisional per-token bonus until finalize."""
    prefixes = {p[:i] for p in phrases for i in range(1, len(p) + 1)}
    ends = set(phrases)
    earned, cums = 0.0, []
    for i in range(len(seq)):
        hist = tuple(seq[: i + 1])
        earned += sum(bonus * k for k in range(1, len(hist) + 1) if hist[-k:] in ends)
        longest = max((k for k in range(1, len(hist) + 1) if hist[-k:] in prefixes), default=0)
        cums.append(earned + bonus * longest)
    return cums, earned


def test_against_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        phrases = [
            tuple(rng.choice((A, B, C)) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 5))
        ]
        graph = ContextGraph(1.0).build(phrases)
        seq = [rng.choice((A, B, C, X)) for _ in range(rng.randint(0, 12))]
        cums, final = _reference(phrases, 1.0, seq)
        deltas, _, end = walk(graph, seq)
        got = [sum(deltas[: i + 1]) for i in range(len(deltas))]
        assert got == pytest.approx(cums), (phrases, seq)
        assert sum(deltas) + end == pytest.approx(final), (phrases, seq)


# ---------------------------------------------------------------------------------------------
# lexicons and per-utterance maps


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("play jazz\n\nbook a table\n", 2, "empty line"),
        ("play jazz\t3\t4\n", 1, "TABs"),
        ("play jazz\tmany\n", 1, "not a positive integer"),
        ("play jazz\nbook\nplay   jazz\t2\n", 3, "duplicate phrase"),
        ("a\nb\nc\n", 3, "more than 2 phrases"),
    ],
)
def test_read_lexicon_errors_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path / "lex.txt", text)
    with pytest.raises(InputError, match=message) as e:
        read_lexicon(path, max_phrases=2)
    assert f"{path}:{line}:" in str(e.value)


def test_read_lexicon_default_limit_is_100k_phrases(tmp_path):
    path = _write(tmp_path / "big.txt", "".join(f"w{i}\n" for i in range(100_001)))
    with pytest.raises(InputError, match="more than 100000 phrases") as e:
        read_lexicon(path)
    assert f"{path}:100001:" in str(e.value)


def test_read_lexicon_formats(tmp_path):
    path = _write(tmp_path / "lex.txt", "play  jazz\t3\nbook a table\n")
    assert read_lexicon(path) == [("play jazz", f"{path}:1"), ("book a table", f"{path}:2")]
    assert read_lexicon(_write(tmp_path / "empty.txt", "")) == []


def test_tokenize_phrases_errors_and_skips(asr_data, caplog):
    from asr.data import Tokenizer

    tok = Tokenizer(asr_data["bpe_model"])
    good = tokenize_phrases([("play jazz", "f:1")], tok)
    assert good == [Phrase("play jazz", tuple(tok.encode("play jazz")), "f:1")]
    with pytest.raises(InputError, match=r"f:7: phrase .* tokenises to nothing"):
        tokenize_phrases([("\u200b", "f:7")], tok)
    with pytest.raises(InputError, match=r"f:8: .*outside the BPE model.*JAZZ"):
        tokenize_phrases([("play JAZZ", "f:8")], tok)
    with pytest.raises(InputError, match=r"f:9: .*special symbol"):
        tokenize_phrases([("<blk>", "f:9")], tok)
    # a full-width letter normalises (NFKC) to the same pieces: one phrase, a counted skip
    with caplog.at_level(logging.WARNING):
        out = tokenize_phrases([("play jazz", "f:1"), ("play ｊazz", "f:2")], tok)
    assert [p.where for p in out] == ["f:1"]
    assert "1 phrase(s) skipped" in caplog.text


def test_read_context_map(tmp_path):
    lists, utts = {"global", "music", "weather"}, {"u1", "u2", "u3"}
    path = _write(tmp_path / "map.tsv", "u1\tmusic\nu2\tmusic,weather\nu3\t\n")
    assert read_context_map(path, lists, utts) == {
        "u1": ("music",),
        "u2": ("music", "weather"),
        "u3": (),
    }
    cases = {
        "u1\tmusic\nu9\tmusic\n": (2, "not in the cuts"),
        "u1\tmusic\nu2\tsport\n": (2, "unknown list 'sport'"),
        "u1\tmusic\nu1\tweather\n": (2, "listed twice"),
        "u1\tmusic\n\n": (2, "empty line"),
        "u1 music\n": (1, "TABs"),
    }
    for text, (line, message) in cases.items():
        _write(path, text)
        with pytest.raises(InputError, match=message) as e:
            read_context_map(path, lists, utts)
        assert f"{path}:{line}:" in str(e.value)


def test_utterances_absent_from_the_map_are_counted(asr_data, tmp_path, caplog):
    """The documented rule (absent: the global list) applies, and is logged with a count; a map
    that names none of the decoded utterances (a dev run given the test set's map: how a
    hand-made dev sweep of session 19 was biased with the global list alone) is a warning."""
    from asr.data import Tokenizer

    tok = Tokenizer(asr_data["bpe_model"])
    lex = tmp_path / "lex"
    lex.mkdir()
    _write(lex / "global.txt", "play jazz\n")
    _write(lex / "music.txt", "play jazz\n")
    path = _write(tmp_path / "map.tsv", "u1\tmusic\n")
    with caplog.at_level(logging.INFO):
        b = ContextBiasing.load(lex, tok, 1.0, path, utt_ids=["u1", "u2", "u3"])
    assert b.lists_for("u2") == ("global",)
    infos = [r for r in caplog.records if "not in the map" in r.getMessage()]
    assert [r.levelno for r in infos] == [logging.INFO]
    assert f"{path}: 2 of 3 utterances" in infos[0].getMessage()
    assert "'global' list" in infos[0].getMessage()
    caplog.clear()
    _write(path, "")
    with caplog.at_level(logging.INFO):
        ContextBiasing.load(lex, tok, 1.0, path, utt_ids=["u1", "u2"])
    warned = [r for r in caplog.records if "not in the map" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert "2 of 2 utterances" in warned[0].getMessage()
    caplog.clear()
    _write(path, "u1\tmusic\nu2\t\n")  # every utterance named: nothing to say
    with caplog.at_level(logging.INFO):
        ContextBiasing.load(lex, tok, 1.0, path, utt_ids=["u1", "u2"])
    assert "not in the map" not in caplog.text


def test_lexicon_files(tmp_path):
    (tmp_path / "lex").mkdir()
    _write(tmp_path / "lex" / "global.txt", "")
    _write(tmp_path / "lex" / "intent-PlayMusic.txt", "")
    _write(tmp_path / "lex" / "lexicons.json", "{}")
    assert sorted(lexicon_files(tmp_path / "lex")) == ["global", "intent-PlayMusic"]
    assert list(lexicon_files(tmp_path / "lex" / "global.txt")) == ["global"]
    with pytest.raises(InputError, match="no such lexicon"):
        lexicon_files(tmp_path / "nope")
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="no <list>.txt"):
        lexicon_files(tmp_path / "none")


def test_list_selection_rules_and_graph_cache():
    lists = {
        "global": [Phrase("g", (A,), "g:1")],
        "music": [Phrase("m", (B, C), "m:1"), Phrase("g", (A,), "m:2")],
        "weather": [Phrase("w", (D,), "w:1")],
    }
    everything = ContextBiasing(lists, 1.0)
    assert everything.lists_for("any") == ("global", "music", "weather")
    mapped = ContextBiasing(lists, 1.0, {"u1": ("music",), "u2": ("music",), "u3": ()})
    assert mapped.lists_for("u1") == ("music",)
    assert mapped.lists_for("u3") == () and mapped.graph_for("u3") is None
    assert mapped.lists_for("absent") == ("global",)
    assert mapped.graph_for("absent").num_phrases == 1
    g1, g2 = mapped.graph_for("u1"), mapped.graph_for("u2")
    assert g1 is g2 and g1.num_phrases == 2  # one graph per combination of lists
    no_global = ContextBiasing({"music": lists["music"]}, 1.0, {"u1": ("music",)})
    assert no_global.graph_for("absent") is None
    assert mapped.summary()["graphs"] == ["global", "music"]
