"""Contextual biasing in modified beam search and ``decode-asr``: a zero bonus is the unbiased
search bit for bit; a bonus provably brings a phrase into the n-best; bad lexicons and maps stop
``decode-asr`` with one line naming file:line."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from pathlib import Path

import pytest
import torch

from asr import decode
from asr.config import get_model_preset
from asr.context_graph import ContextGraph
from asr.model import build_model
from asr.search import SEARCH_METHODS, ModifiedBeamSearch
from tests.asr.faults import assert_user_error, run_main, write_asr_checkpoint


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    cfg = dataclasses.replace(get_model_preset("tiny"), vocab_size=40)
    model = build_model(cfg).eval()
    feats = torch.randn(3, 80, 80)  # (N, T, C)
    lens = torch.tensor([80, 64, 48])
    return model, feats, lens


def _as_tuples(nbest):
    return [(h.tokens, h.score, h.context_score) for h in nbest]


@pytest.mark.parametrize("beam", [1, 4, 8])
def test_zero_bonus_is_the_unbiased_search_bit_for_bit(random_model, beam):
    model, feats, lens = random_model
    search = ModifiedBeamSearch(beam)
    plain = search(model, feats, lens)
    # phrases the hypotheses actually walk through (prefixes, full matches, failures)
    phrases = {h.tokens[i : i + 3] for nb in plain for h in nb for i in range(0, 9, 2)}
    phrases = [list(p) for p in phrases if p]
    graph = ContextGraph(0.0).build(phrases)
    biased = search(model, feats, lens, contexts=[graph, None, graph])
    assert [_as_tuples(nb) for nb in biased] == [_as_tuples(nb) for nb in plain]
    assert all(h.context_score == 0.0 for nb in biased for h in nb)


def test_bonus_brings_a_beam16_hypothesis_into_the_beam4_nbest(random_model):
    model, feats, lens = random_model
    enc, enc_lens = model.transcribe(feats[:1], lens[:1])
    enc = enc[0, : int(enc_lens[0])]
    narrow = ModifiedBeamSearch(4).search_one(model, enc)
    wide = ModifiedBeamSearch(16).search_one(model, enc)
    missing = [h for h in wide if h.tokens not in {n.tokens for n in narrow}]
    assert missing
    target = missing[0]
    graph = ContextGraph(2.0).build([list(target.tokens)])
    biased = ModifiedBeamSearch(4).search_one(model, enc, graph)
    got = {h.tokens: h for h in biased}
    assert target.tokens in got
    assert got[target.tokens].context_score == pytest.approx(2.0 * len(target.tokens))
    assert abs(got[target.tokens].score - target.score) < 1e-3  # the am score is unbiased
    assert biased[0].tokens == target.tokens


class FrameModel:
    """A transducer whose joiner ignores the history: frame t's log-probabilities are fixed.

    Hand-computable beam search (blank = 0, ids 1, 2 special):
        frame 0: blank 0.6, token 3: 0.3, token 4: 0.1
        frame 1: blank 0.6, token 3: 0.3, token 5: 0.1
    Beam 2, unbiased: frame 0 keeps () and (3,); frame 1 keeps () (0.36) and (3,) (0.18);
    (4, 5) has probability 0.01 and is never in the beam. Biased with the phrase (4, 5) and a
    bonus b = 2 per token: on frame 0 (4,) totals log 0.1 + 2 = -0.30 > log 0.6 > log 0.3, so
    (4,) and () survive; on frame 1, (4, 5) totals log 0.01 + 2 + 2 + 4 (completion) = 3.39 and
    (4,) log 0.06 + 2 = -0.81 > () log 0.36 = -1.02. After finalize (4, 5) holds 4 (its two
    tokens' bonus) and (4,) 0.
    """

    blank_id = 0

    def __init__(self) -> None:
        probs = torch.full((2, 6), 1e-12)
        probs[0, [0, 3, 4]] = torch.tensor([0.6, 0.3, 0.1])
        probs[1, [0, 3, 5]] = torch.tensor([0.6, 0.3, 0.1])
        self.frames = probs.log()  # (T, V)

    def transcribe(self, feats, feat_lens):
        return self.frames.expand(feats.shape[0], -1, -1), feat_lens

    def predict(self, tokens, lens, state):
        n = tokens.shape[0]
        return torch.zeros(n, 1, 6), lens, [[torch.zeros(n, 1)]]

    def join(self, enc, enc_lens, pred, pred_lens):
        return (enc[:, :, None] + pred[:, None]), enc_lens, pred_lens  # (K, 1, 1, V)


def test_bonus_provably_brings_the_phrase_into_the_nbest():
    model = FrameModel()
    feats, lens = torch.zeros(1, 2, 1), torch.tensor([2])
    search = ModifiedBeamSearch(beam=2)
    (plain,) = search(model, feats, lens)
    assert [h.tokens for h in plain] == [(), (3,)]
    assert plain[0].score == pytest.approx(math.log(0.36), abs=1e-5)
    graph = ContextGraph(2.0).build([[4, 5]], ["four five"])
    (biased,) = search(model, feats, lens, contexts=[graph])
    assert [h.tokens for h in biased] == [(4, 5), (4,)]
    assert biased[0].score == pytest.approx(math.log(0.01), abs=1e-5)  # am score: no bonus
    assert biased[0].context_score == 4.0 and biased[1].context_score == 0.0
    assert biased[1].score == pytest.approx(math.log(0.06), abs=1e-5)


def test_only_modified_beam_takes_a_context():
    assert [n for n, c in SEARCH_METHODS.items() if c.supports_context] == ["modified_beam"]


# ---------------------------------------------------------------------------------------------
# decode-asr


@pytest.fixture(scope="module")
def setup(asr_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("biasing")
    ckpt = write_asr_checkpoint(root / "asr.pt")
    lex = root / "lex"
    lex.mkdir()
    (lex / "music.txt").write_text("play some jazz\t3\nplay the radio\n")
    (lex / "weather.txt").write_text("the weather\nis it raining\n")
    (lex / "global.txt").write_text("play some jazz\nthe weather\n")
    (lex / "lexicons.json").write_text("{}\n")  # not a list: ignored
    return {"root": root, "ckpt": ckpt, "lex": lex, **asr_data}


def _args(s, out: Path, *extra: str) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--checkpoint",
        str(s["ckpt"]),
        "--bpe-model",
        str(s["bpe_model"]),
        "--cuts",
        str(s["cuts"]),
        "--max-utts",
        "4",
        "--lattices",
        "false",
        "--out-dir",
        str(out),
        *extra,
    ]


def _nbest(out: Path) -> list[dict]:
    (path,) = out.glob("nbest-*.jsonl.gz")
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_decode_asr_biased_outputs_and_zero_score(setup, tmp_path, capsys):
    code, err = run_main(decode.main, _args(setup, tmp_path / "plain"), capsys)
    assert code == 0, err
    plain = _nbest(tmp_path / "plain")
    cmap = tmp_path / "map.tsv"
    cmap.write_text("utt00\tmusic\nutt01\tweather,music\nutt02\t\n")
    lex = str(setup["lex"])
    for score in ("0", "1.5"):
        out = tmp_path / f"ctx{score}"
        argv = _args(setup, out, "--context-lexicon", lex, "--context-score", score)
        code, err = run_main(decode.main, [*argv, "--context-lists", str(cmap)], capsys)
        assert code == 0, err
        recs = _nbest(out)
        assert all("context_score" in h for r in recs for h in r["hyps"])
        (summary,) = out.glob("decode-summary-*.json")
        assert summary.name.endswith(f"_ctx{float(score):g}.json")
        ctx = json.loads(summary.read_text())["context"]
        assert ctx["lists"] == {"global": 2, "music": 2, "weather": 2}
        assert ctx["biased_utterances"] == 3  # utt02: empty field; utt03: absent -> global
        assert ctx["graphs"] == ["global", "music", "music+weather"]
        if score == "0":  # the zero bonus decodes exactly as without biasing
            for r in recs:
                for h in r["hyps"]:
                    assert h.pop("context_score") == 0.0
            assert recs == plain


@pytest.mark.parametrize(
    "case, lexicon, line, message",
    [
        ("empty line", "play some jazz\n\nthe weather\n", 2, "empty line"),
        ("tokenises to nothing", "play some jazz\n\u200b\n", 2, "tokenises to nothing"),
        ("outside the BPE model", "play some jazz\nPLAY JAZZ\n", 2, "outside the BPE model"),
        ("too many phrases", "a\nb\nc\n", 3, "more than 2 phrases"),
    ],
)
def test_decode_asr_bad_lexicon(setup, tmp_path, capsys, case, lexicon, line, message):
    lex = tmp_path / "music.txt"
    lex.write_text(lexicon, encoding="utf-8")
    out = tmp_path / "dec"
    argv = _args(setup, out, "--context-lexicon", str(lex), "--context-score", "1")
    code, err = run_main(decode.main, [*argv, "--context-max-phrases", "2"], capsys)
    assert message in assert_user_error(code, err, "decode-asr", f"{lex}:{line}:")
    assert not list(out.glob("nbest-*"))


@pytest.mark.parametrize(
    "case, text, line, message",
    [
        ("unknown list", "utt00\tmusic\nutt01\tsport\n", 2, "unknown list 'sport'"),
        ("unknown utterance", "utt00\tmusic\nnobody\tmusic\n", 2, "not in the cuts"),
        ("empty line", "\nutt00\tmusic\n", 1, "empty line"),
    ],
)
def test_decode_asr_bad_context_lists(setup, tmp_path, capsys, case, text, line, message):
    cmap = tmp_path / "map.tsv"
    cmap.write_text(text)
    out = tmp_path / "dec"
    argv = _args(setup, out, "--context-lexicon", str(setup["lex"]), "--context-score", "1")
    code, err = run_main(decode.main, [*argv, "--context-lists", str(cmap)], capsys)
    assert message in assert_user_error(code, err, "decode-asr", f"{cmap}:{line}:")
    assert not list(out.glob("nbest-*"))


def test_decode_asr_context_options_need_modified_beam_and_a_lexicon(setup, tmp_path, capsys):
    lex = str(setup["lex"])
    argv = _args(setup, tmp_path / "g", "--method", "greedy", "--context-lexicon", lex)
    code, err = run_main(decode.main, argv, capsys)
    assert_user_error(code, err, "decode-asr", "--context-lexicon", "greedy", "modified_beam")
    code, err = run_main(decode.main, _args(setup, tmp_path / "s", "--context-score", "2"), capsys)
    assert_user_error(code, err, "decode-asr", "--context-lexicon")
