"""Batched modified beam search (``asr.search.ModifiedBeamSearch``): the batch decodes each
utterance as it is decoded alone; ``max_sym_per_frame=1`` is the former per-utterance search
(kept below as the reference); several symbols per frame and merging are checked by hand on a
model with fixed per-frame probabilities."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from asr.config import get_model_preset
from asr.context_graph import ContextGraph, ContextState
from asr.model import build_model
from asr.search import Hypothesis, ModifiedBeamSearch, build_search
from common.numeric import logaddexp


@torch.no_grad()
def reference_search_one(model, enc, beam, context=None):
    """The per-utterance modified beam search before batching (one symbol per frame)."""
    dev = enc.device
    one = torch.ones(1, dtype=torch.long, device=dev)
    blank = torch.full((1, 1), model.blank_id, dtype=torch.long, device=dev)
    pred, _, state = model.predict(blank, one, None)
    hyps: dict[tuple[int, ...], float] = {(): 0.0}
    cache = {(): (pred[0, 0], [[s[0] for s in layer] for layer in state])}
    ctx: dict[tuple[int, ...], tuple[float, ContextState]] = {}
    if context is not None:
        ctx[()] = (0.0, context.root)
    for t in range(enc.shape[0]):
        keys = list(hyps)
        k = len(keys)
        preds = torch.stack([cache[h][0] for h in keys])
        ones = torch.ones(k, dtype=torch.long, device=dev)
        logits, _, _ = model.join(enc[t].expand(k, 1, -1), ones, preds[:, None], ones)
        logp = logits[:, 0, 0].log_softmax(-1)
        v = logp.shape[1]
        base = torch.tensor([hyps[h] for h in keys], dtype=logp.dtype, device=dev)
        am = base[:, None] + logp
        total = am
        if context is not None:
            rows = [context.step_scores(ctx[h][1], v, model.blank_id) for h in keys]
            earned = torch.tensor([ctx[h][0] for h in keys], dtype=logp.dtype)
            total = am + (earned[:, None] + torch.stack(rows)).to(dev)
        top = total.flatten().topk(min(beam, total.numel()))
        am_top = am.flatten()[top.indices].tolist()
        new: dict[tuple[int, ...], float] = {}
        new_ctx: dict[tuple[int, ...], tuple[float, ContextState]] = {}
        for score, idx in zip(am_top, top.indices.tolist(), strict=True):
            src, tok = divmod(idx, v)
            h = keys[src] if tok == model.blank_id else keys[src] + (tok,)
            new[h] = score if h not in new else logaddexp(new[h], score)
            if context is not None and h not in new_ctx:
                if tok == model.blank_id:
                    new_ctx[h] = ctx[h]
                else:
                    earned_src, node = ctx[keys[src]]
                    delta, node, _ = context.forward_one_step(node, tok)
                    new_ctx[h] = (earned_src + delta, node)
        todo = [h for h in new if h not in cache]
        if todo:
            states = [cache[h[:-1]][1] for h in todo]
            st = [
                [torch.stack([s[li][j] for s in states]) for j in range(len(states[0][li]))]
                for li in range(len(states[0]))
            ]
            toks = torch.tensor([[h[-1]] for h in todo], dtype=torch.long, device=dev)
            out, _, nst = model.predict(toks, torch.ones(len(todo), dtype=torch.long), st)
            for j, h in enumerate(todo):
                cache[h] = (out[j, 0], [[s[j] for s in layer] for layer in nst])
        hyps = new
        ctx = new_ctx
        cache = {h: cache[h] for h in hyps}
    out_hyps = [Hypothesis(h, s) for h, s in hyps.items()]
    if context is not None:
        for hyp in out_hyps:
            earned, node = ctx[hyp.tokens]
            hyp.context_score = earned + context.finalize(node)[0]
    return sorted(out_hyps, key=lambda hyp: -hyp.total)


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    cfg = dataclasses.replace(get_model_preset("tiny"), vocab_size=40)
    model = build_model(cfg).eval()
    feats = torch.randn(4, 72, 80)  # (N, T, C)
    lens = torch.tensor([40, 72, 24, 56])  # unsorted, different lengths
    with torch.no_grad():
        enc, enc_lens = model.transcribe(feats, lens)
    return model, feats, lens, enc, enc_lens


def _graph(nbests) -> ContextGraph:
    """A graph of pieces of the hypotheses (matches, prefixes and failures happen)."""
    phrases = {h.tokens[i : i + 3] for nb in nbests for h in nb[:3] for i in range(0, 8, 2)}
    return ContextGraph(1.0).build(sorted(list(p) for p in phrases if p))


def _assert_same(got: list[Hypothesis], want: list[Hypothesis], tol: float = 1e-5) -> None:
    assert [h.tokens for h in got] == [h.tokens for h in want]
    for g, w in zip(got, want, strict=True):
        assert g.score == pytest.approx(w.score, abs=tol, rel=tol)
        assert g.context_score == pytest.approx(w.context_score, abs=tol)


@pytest.mark.parametrize("beam", [1, 4, 8])
@pytest.mark.parametrize("biased", [False, True])
def test_max_sym_1_is_the_former_per_utterance_search(random_model, beam, biased):
    model, feats, lens, enc, enc_lens = random_model
    search = ModifiedBeamSearch(beam)
    contexts = [None] * len(lens)
    if biased:
        graph = _graph(search(model, feats, lens))
        contexts = [graph, None, graph, graph]
    got = search(model, feats, lens, contexts=contexts)
    for i, ctx in enumerate(contexts):
        want = reference_search_one(model, enc[i, : int(enc_lens[i])], beam, ctx)
        _assert_same(got[i], want)


@pytest.mark.parametrize("max_sym", [1, 2])
@pytest.mark.parametrize("biased", [False, True])
@pytest.mark.parametrize("length_bonus", [0.0, 0.7])
@pytest.mark.parametrize("score_beam", [math.inf, 1.5])
def test_batch_equals_one_utterance_at_a_time(
    random_model, max_sym, biased, length_bonus, score_beam
):
    model, feats, lens, enc, enc_lens = random_model
    search = ModifiedBeamSearch(
        beam=6, max_sym_per_frame=max_sym, length_bonus=length_bonus, score_beam=score_beam
    )
    contexts = [None] * len(lens)
    if biased:
        graph = _graph(search(model, feats, lens))
        contexts = [graph, graph, None, graph]
    batched = search(model, feats, lens, contexts=contexts)
    assert len(batched) == len(lens)
    for i, ctx in enumerate(contexts):
        _assert_same(batched[i], search.search_one(model, enc[i, : int(enc_lens[i])], ctx))
    if biased:
        assert any(h.context_score != 0.0 for nb in batched for h in nb)


@pytest.mark.parametrize("max_sym", [1, 2, 3])
def test_no_duplicate_token_sequences(random_model, max_sym):
    model, feats, lens, _, _ = random_model
    for nb in ModifiedBeamSearch(beam=8, max_sym_per_frame=max_sym)(model, feats, lens):
        tokens = [h.tokens for h in nb]
        assert len(set(tokens)) == len(tokens) and 1 <= len(tokens) <= 8
        assert [h.total for h in nb] == sorted((h.total for h in nb), reverse=True)


def test_zero_bonus_is_bit_identical_with_several_symbols(random_model):
    model, feats, lens, _, _ = random_model
    search = ModifiedBeamSearch(beam=4, max_sym_per_frame=2)
    plain = search(model, feats, lens)
    graph = _graph(plain)
    for node in graph.nodes:  # every bonus 0
        node.token_score = 0.0
    graph._fill_scores_and_links()
    biased = search(model, feats, lens, contexts=[graph, None, graph, graph])
    key = [[(h.tokens, h.score, h.context_score) for h in nb] for nb in biased]
    assert key == [[(h.tokens, h.score, 0.0) for h in nb] for nb in plain]


def test_beam_1_max_sym_1_is_greedy(random_model):
    model, feats, lens, _, _ = random_model
    greedy = build_search("greedy", beam=1, max_sym_per_frame=1)(model, feats, lens)
    beam1 = build_search("modified_beam", beam=1, max_sym_per_frame=1)(model, feats, lens)
    for g, b in zip(greedy, beam1, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-4)


class FrameModel:
    """A transducer whose joiner ignores the history: every frame's probabilities are
    blank 0.6, token 3: 0.3, token 4: 0.1 (blank = 0)."""

    blank_id = 0

    def __init__(self, num_frames: int) -> None:
        probs = torch.full((num_frames, 6), 1e-12)
        probs[:, [0, 3, 4]] = torch.tensor([0.6, 0.3, 0.1])
        self.frames = probs.log()  # (T, V)

    def transcribe(self, feats, feat_lens):
        return self.frames.expand(feats.shape[0], -1, -1), feat_lens

    def predict(self, tokens, lens, state):
        n = tokens.shape[0]
        return torch.zeros(n, 1, 6), lens, [[torch.zeros(n, 1)]]

    def join(self, enc, enc_lens, pred, pred_lens):
        return (enc[:, :, None] + pred[:, None]), enc_lens, pred_lens  # (K, 1, 1, V)


def test_two_symbols_on_one_frame_by_hand():
    """One frame, beam 3, two symbols: step 1 keeps () (blank, 0.6) on the next frame and (3,)
    (0.3), (4,) (0.1) on the frame; step 2 (the last: a token moves on too) ranks () 0.6, (3,)
    0.3 * 0.6, (3, 3) 0.3 * 0.3 above (3, 4) 0.03, (4,) 0.06..."""
    model = FrameModel(1)
    feats, lens = torch.zeros(1, 1, 1), torch.tensor([1])
    (one,) = ModifiedBeamSearch(beam=3)(model, feats, lens)
    assert [h.tokens for h in one] == [(), (3,), (4,)]
    (two,) = ModifiedBeamSearch(beam=3, max_sym_per_frame=2)(model, feats, lens)
    assert [h.tokens for h in two] == [(), (3,), (3, 3)]
    want = [math.log(0.6), math.log(0.18), math.log(0.09)]
    assert [h.score for h in two] == pytest.approx(want, abs=1e-5)


def test_score_beam_by_hand():
    """One frame, beam 3: () (blank, log 0.6), (3,) (log 0.3), (4,) (log 0.1). A score beam of
    1 nat drops (4,) (log 6 = 1.79 below the best) and keeps (3,) (log 2 = 0.69 below)."""
    model = FrameModel(1)
    feats, lens = torch.zeros(1, 1, 1), torch.tensor([1])
    for score_beam, want in (
        (math.inf, [(), (3,), (4,)]),
        (2.0, [(), (3,), (4,)]),
        (1.0, [(), (3,)]),
        (0.5, [()]),
    ):
        (nb,) = ModifiedBeamSearch(beam=3, score_beam=score_beam)(model, feats, lens)
        assert [h.tokens for h in nb] == want, score_beam
    # the pruning score is the one with the length bonus, 0.8 per token: (3,) (log 0.3 + 0.8)
    # is now the best, () 0.11 below it and (4,) 1.10 below: dropped
    (nb,) = ModifiedBeamSearch(beam=3, length_bonus=0.8, score_beam=1.0)(model, feats, lens)
    assert [h.tokens for h in nb] == [(3,), ()]
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="score_beam"):
            ModifiedBeamSearch(score_beam=bad)


def test_huge_score_beam_is_bit_identical(random_model):
    model, feats, lens, _, _ = random_model
    plain = ModifiedBeamSearch(beam=6, max_sym_per_frame=2, length_bonus=0.5)(model, feats, lens)
    wide = ModifiedBeamSearch(beam=6, max_sym_per_frame=2, length_bonus=0.5, score_beam=1e9)(
        model, feats, lens
    )
    key = lambda out: [[(h.tokens, h.score, h.length_score) for h in nb] for nb in out]  # noqa: E731
    assert key(wide) == key(plain)


def test_length_bonus_prunes_by_hand_and_keeps_the_acoustic_score():
    """One frame, beam 1: blank (0.6) beats token 3 (0.3) unless each token earns more than
    log 2 in the pruning score; the kept hypothesis still carries log 0.3, not the bonus."""
    model = FrameModel(1)
    feats, lens = torch.zeros(1, 1, 1), torch.tensor([1])
    (plain,) = ModifiedBeamSearch(beam=1)(model, feats, lens)
    (small,) = ModifiedBeamSearch(beam=1, length_bonus=0.6)(model, feats, lens)
    (large,) = ModifiedBeamSearch(beam=1, length_bonus=0.8)(model, feats, lens)
    assert [h.tokens for h in plain] == [h.tokens for h in small] == [()]
    assert [h.tokens for h in large] == [(3,)]
    assert large[0].score == pytest.approx(math.log(0.3), abs=1e-5)
    assert large[0].context_score == 0.0
    assert large[0].length_score == pytest.approx(0.8)
    # two symbols, beam 2: the bonus keeps the longer (3, 3) (0.09) over () (0.6); the output
    # is ranked by the score the beam was pruned on: log 0.09 + 3.0 > log 0.18 + 1.5
    (two,) = ModifiedBeamSearch(beam=2, max_sym_per_frame=2, length_bonus=1.5)(model, feats, lens)
    assert [h.tokens for h in two] == [(3, 3), (3,)]
    assert [h.score for h in two] == pytest.approx([math.log(0.09), math.log(0.18)], abs=1e-5)
    assert [h.length_score for h in two] == [3.0, 1.5]
    assert [h.total for h in two] == [h.score + h.length_score for h in two]
    with pytest.raises(ValueError, match="finite"):
        ModifiedBeamSearch(length_bonus=math.inf)


def test_zero_length_bonus_is_bit_identical(random_model):
    model, feats, lens, _, _ = random_model
    plain = ModifiedBeamSearch(beam=4, max_sym_per_frame=2)(model, feats, lens)
    zero = ModifiedBeamSearch(beam=4, max_sym_per_frame=2, length_bonus=0.0)(model, feats, lens)
    assert [[(h.tokens, h.score, h.length_score) for h in nb] for nb in zero] == [
        [(h.tokens, h.score, 0.0) for h in nb] for nb in plain
    ]


def test_paths_to_the_same_frame_are_merged():
    """Two frames, two symbols, a beam wide enough to prune nothing: a hypothesis' score is the
    log of the sum over its alignments. (3,): 3 then blank on frame 0, blank on frame 1; or
    blank, then 3 and blank: 2 x 0.3 * 0.6 * 0.6. (3, 3): both on frame 0 (the second moves on)
    then blank; 3, blank / 3, blank; blank then both: 0.09 * 0.6 * 2 + 0.18 * 0.18."""
    model = FrameModel(2)
    feats, lens = torch.zeros(1, 2, 1), torch.tensor([2])
    (nb,) = ModifiedBeamSearch(beam=200, max_sym_per_frame=2)(model, feats, lens)
    got = {h.tokens: h.score for h in nb}
    assert len(got) == len(nb)
    assert got[()] == pytest.approx(math.log(0.36), abs=1e-5)
    assert got[(3,)] == pytest.approx(math.log(2 * 0.3 * 0.6 * 0.6), abs=1e-5)
    assert got[(3, 3)] == pytest.approx(math.log(0.09 * 0.6 * 2 + 0.18 * 0.18), abs=1e-5)
    # with one symbol per frame, (3, 3) has the single alignment 3 / 3
    (nb1,) = ModifiedBeamSearch(beam=200)(model, feats, lens)
    got1 = {h.tokens: h.score for h in nb1}
    assert got1[(3, 3)] == pytest.approx(math.log(0.09), abs=1e-5)
    assert got1[(3,)] == pytest.approx(math.log(2 * 0.3 * 0.6), abs=1e-5)


def test_build_search_passes_max_sym_per_frame():
    search = build_search("modified_beam", beam=4, max_sym_per_frame=3)
    assert (search.beam, search.max_sym_per_frame) == (4, 3)
    with pytest.raises(ValueError):
        ModifiedBeamSearch(beam=4, max_sym_per_frame=0)


def test_lstm_step_with_token_gates_is_the_predictor(random_model):
    from asr.search import _lstm_predict, _token_gates

    model = random_model[0]
    toks = torch.tensor([3, 7, 0, 39])
    ones = torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        _, _, state = model.predict(torch.tensor([[5], [6], [7], [8]]), ones, None)
        want, _, want_state = model.predict(toks[:, None], ones, state)
        gates = _token_gates(model)
        assert gates is not None
        got, got_state = _lstm_predict(model.predictor, gates, toks, state)
    torch.testing.assert_close(got, want[:, 0])
    for g_layer, w_layer in zip(got_state, want_state, strict=True):
        for g, w in zip(g_layer, w_layer, strict=True):
            torch.testing.assert_close(g, w)
    # four children of two distinct parents (rows 1 and 3 of state): each parent's recurrent
    # projection computed once, then routed to its children by ``back``
    back = torch.tensor([1, 0, 1, 0])
    parents = torch.tensor([1, 3])
    with torch.no_grad():
        uniq = [[s.index_select(0, parents) for s in layer] for layer in state]
        full = [[s.index_select(0, back) for s in layer] for layer in uniq]
        want, _, want_state = model.predict(toks[:, None], ones, full)
        got, got_state = _lstm_predict(model.predictor, gates, toks, uniq, back)
    torch.testing.assert_close(got, want[:, 0])
    for g_layer, w_layer in zip(got_state, want_state, strict=True):
        for g, w in zip(g_layer, w_layer, strict=True):
            torch.testing.assert_close(g, w)
    assert _token_gates(FrameModel(1)) is None  # other models: model.predict


def test_store_appends_grows_and_compacts():
    from asr.search import _Store

    rows = lambda n, start: torch.arange(start, start + n, dtype=torch.float32)[:, None]  # noqa: E731
    store = _Store(rows(1, 0).repeat(1, 3), [[rows(1, 0).repeat(1, 2), rows(1, 0)]])
    for start in range(1, 300, 7):  # past the first capacity (256): the buffers double
        assert (
            store.append(
                rows(7, start).repeat(1, 3), [[rows(7, start).repeat(1, 2), rows(7, start)]]
            )
            == start
        )
    assert store.size == 302 and store.pred.shape[0] >= 302
    store.compact([5, 300, 0])
    assert store.size == 3
    assert store.pred[:3, 0].tolist() == [5.0, 300.0, 0.0]
    assert (
        store.state[0][0][:3, 1].tolist() == store.state[0][1][:3, 0].tolist() == [5.0, 300.0, 0.0]
    )


def test_store_computes_each_recurrent_projection_once():
    from asr.search import _Store

    torch.manual_seed(0)
    h, c, w = torch.randn(3, 4), torch.randn(3, 4), torch.randn(8, 4)
    store = _Store(torch.randn(3, 5), [[h, c]], [w])
    calls = []
    real_linear = F.linear

    def counting(x, weight, *a):
        calls.append(x.shape[0])
        return real_linear(x, weight, *a)

    rows = torch.tensor([2, 0, 2])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("asr.search.F.linear", counting)
        (got,) = store.recurrent(rows)
        torch.testing.assert_close(got, h[rows] @ w.T)
        assert calls == [2]  # rows 0 and 2, once each
        (got,) = store.recurrent(torch.tensor([0, 1]))
        assert calls == [2, 1]  # only row 1 is new
        torch.testing.assert_close(got, h[[0, 1]] @ w.T)
        # new rows (past the first capacity: the buffers grow) have none yet; compact keeps
        # what was computed, renumbered
        h2 = torch.randn(300, 4)
        first = store.append(torch.randn(300, 5), [[h2, torch.randn(300, 4)]])
        store.compact([2, first + 299, 0])
        (got,) = store.recurrent(torch.tensor([0, 1, 2]))
        assert calls == [2, 1, 1]  # only the appended row
        torch.testing.assert_close(got, torch.stack([h[2], h2[299], h[0]]) @ w.T)


@pytest.mark.parametrize("biased", [False, True])
def test_compacting_the_store_every_frame_changes_nothing(random_model, monkeypatch, biased):
    import asr.search as search_mod

    model, feats, lens, _, _ = random_model
    search = ModifiedBeamSearch(beam=6, max_sym_per_frame=2, length_bonus=0.3)
    contexts = None
    if biased:
        graph = _graph(search(model, feats, lens))
        contexts = [graph, None, graph, graph]
    lazy = search(model, feats, lens, contexts=contexts)
    monkeypatch.setattr(search_mod, "_COMPACT_FACTOR", 0)
    monkeypatch.setattr(search_mod, "_COMPACT_SLACK", 0)
    eager = search(model, feats, lens, contexts=contexts)
    assert [[(h.tokens, h.score, h.total) for h in nb] for nb in eager] == [
        [(h.tokens, h.score, h.total) for h in nb] for nb in lazy
    ]


def test_same_text_merging_by_hand():
    """One frame, two symbols; token 3 spells "a", token 4 "aa". Equal token sequences only
    (beam 4): (), (3,) 0.18, (3, 3) 0.09, (4,) 0.06, of which two spell "aa". Same-text
    merging: (4,) joins (3, 3) (0.09 + 0.06) and the freed place goes to "aaa" ((3, 4) and
    (4, 3), 0.03 each, merged too); (4, 4) "aaaa" (0.01) does not fit."""
    model = FrameModel(1)
    feats, lens = torch.zeros(1, 1, 1), torch.tensor([1])
    pieces = ["", "", "", "a", "aa", ""]
    spell = lambda h: "".join(pieces[t] for t in h)  # noqa: E731
    (plain,) = ModifiedBeamSearch(beam=4, max_sym_per_frame=2)(model, feats, lens)
    assert [spell(h.tokens) for h in plain] == ["", "a", "aa", "aa"]
    (nb,) = ModifiedBeamSearch(beam=4, max_sym_per_frame=2, merge_pieces=pieces)(model, feats, lens)
    assert [spell(h.tokens) for h in nb] == ["", "a", "aa", "aaa"]
    assert nb[2].tokens == (3, 3)  # the better tokenisation keeps the place
    want = [math.log(0.6), math.log(0.18), math.log(0.15), math.log(0.06)]
    assert [h.score for h in nb] == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="5 pieces for 6"):
        ModifiedBeamSearch(beam=2, merge_pieces=pieces[:5])(model, feats, lens)


@pytest.mark.parametrize("max_sym", [1, 2])
@pytest.mark.parametrize("biased", [False, True])
def test_same_text_merging_batched_and_distinct(random_model, max_sym, biased):
    """Pieces that collide (8 distinct strings over 40 ids; the equal-token-sequence search
    returns several tokenisations of one text): the batch equals one utterance at a time and
    every n-best list holds distinct texts."""
    model, feats, lens, enc, enc_lens = random_model
    pieces = [""] * 3 + ["xyzw"[i % 4] * (1 + i % 2) for i in range(3, 40)]
    spell = lambda h: "".join(pieces[t] for t in h)  # noqa: E731
    search = ModifiedBeamSearch(beam=6, max_sym_per_frame=max_sym, merge_pieces=pieces)
    contexts = [None] * len(lens)
    if biased:
        graph = _graph(search(model, feats, lens))
        contexts = [graph, None, graph, graph]
    batched = search(model, feats, lens, contexts=contexts)
    plain = ModifiedBeamSearch(beam=6, max_sym_per_frame=max_sym)(model, feats, lens)
    for i, ctx in enumerate(contexts):
        _assert_same(batched[i], search.search_one(model, enc[i, : int(enc_lens[i])], ctx))
        texts = [spell(h.tokens) for h in batched[i]]
        assert len(set(texts)) == len(texts) and 1 <= len(texts) <= 6
    assert any(len({spell(h.tokens) for h in nb}) < len(nb) for nb in plain)  # collisions
