"""RNN-T search methods behind a registry: batched greedy, modified beam search (batched over
utterances and beams, up to ``max_sym_per_frame`` symbols per frame; 1 = icefall's
``modified_beam_search``), and torchaudio's ``RNNTBeamSearch`` as the reference.

Every method maps encoder-side inputs to, per utterance, an n-best list of
:class:`Hypothesis` (token ids without blanks, log-probability score), best first.

References: Graves 2012 (RNN-T beam search); Kang et al., "Fast and parallel decoding for
transducer", ICASSP 2023 (one symbol per frame, modified beam search); Saon et al., "Alignment-
length synchronous decoding for RNN transducer", ICASSP 2020 (several symbols per frame).

Contextual biasing (``modified_beam`` only, ``SearchMethod.supports_context``): given one
:class:`asr.context_graph.ContextGraph` (or None) per utterance, a hypothesis carries its graph
state and the bonus it earned; each non-blank token adds the graph's step score to the score
the beam is pruned on, and the end of the utterance gives back unfinished matches
(``ContextGraph.finalize``). Unlike icefall, which adds a token's bonus after the frame's top-k,
the bonus of every candidate token is added before it (one cached (V,) row per graph node), so
a boosted token can enter the beam on its own frame. The
output keeps the acoustic score (``score``) apart from the bonus (``context_score``) and ranks
by their sum (plus ``length_score`` with a length bonus: the n-best is ranked by the score the
beam was pruned on). With every bonus 0 the search is the unbiased one, bit for bit
(``tests/asr/test_biasing.py``).

Usage:
    search = SEARCH_METHODS["modified_beam"](beam=8, max_sym_per_frame=2)
    search = build_search("greedy", beam=8, max_sym_per_frame=3)   # drops what greedy lacks
    nbests = search(model, feats, feat_lens)   # list (N) of list[Hypothesis]
    nbests = search(model, feats, feat_lens, contexts=[graph, None, ...])   # biased
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchaudio.models import RNNTBeamSearch
from torchaudio.models.rnnt import _CustomLSTM, _Predictor

from asr.context_graph import ContextGraph
from asr.model import Transducer
from common.numeric import logaddexp


@dataclass
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # natural-log probability (am_score), without any biasing bonus
    context_score: float = 0.0  # contextual-biasing bonus (finalized)
    length_score: float = 0.0  # length bonus x tokens (ModifiedBeamSearch(length_bonus=...))

    @property
    def total(self) -> float:
        """The score the search ranked by: acoustic score plus every bonus it pruned with."""
        return self.score + self.context_score + self.length_score


def _where_state(mask: torch.Tensor, new, old):
    """Select per batch row between two predictor states (list of list of (N, H))."""
    return [
        [torch.where(mask.unsqueeze(1), n, o) for n, o in zip(ln, lo, strict=True)]
        for ln, lo in zip(new, old, strict=True)
    ]


class SearchMethod:
    """Base class; subclasses implement :meth:`__call__` (with a ``contexts`` argument, one
    context graph or None per utterance, if :attr:`supports_context`)."""

    name = ""
    supports_context = False

    def __call__(
        self, model: Transducer, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> list[list[Hypothesis]]:
        raise NotImplementedError


class GreedySearch(SearchMethod):
    """Batched greedy search, at most one non-blank symbol per encoder frame."""

    name = "greedy"

    def __init__(self, max_sym_per_frame: int = 1) -> None:
        self.max_sym_per_frame = max_sym_per_frame

    @torch.no_grad()
    def __call__(self, model, feats, feat_lens):
        enc, enc_lens = model.transcribe(feats, feat_lens)  # (N, T, J)
        return self.search_encoded(model, enc, enc_lens)

    @torch.no_grad()
    def search_encoded(self, model, enc: torch.Tensor, enc_lens: torch.Tensor):
        n, t_max, _ = enc.shape
        one = torch.ones(n, dtype=torch.long, device=enc.device)
        blank = torch.full((n, 1), model.blank_id, dtype=torch.long, device=enc.device)
        pred, _, state = model.predict(blank, one, None)  # (N, 1, J)
        tokens: list[list[int]] = [[] for _ in range(n)]
        scores = torch.zeros(n, dtype=torch.float64, device=enc.device)
        for t in range(t_max):
            active = t < enc_lens
            for _ in range(self.max_sym_per_frame):
                logits, _, _ = model.join(enc[:, t : t + 1], one, pred, one)  # (N, 1, 1, V)
                logp = logits[:, 0, 0].log_softmax(-1)
                best = logp.argmax(-1)
                scores += torch.where(active, logp.gather(1, best[:, None])[:, 0], 0.0).double()
                emit = active & (best != model.blank_id)
                if not bool(emit.any()):
                    break
                new_pred, _, new_state = model.predict(best[:, None], one, state)
                pred = torch.where(emit[:, None, None], new_pred, pred)
                state = _where_state(emit, new_state, state)
                for i in emit.nonzero()[:, 0].tolist():
                    tokens[i].append(int(best[i]))
                active = emit  # only rows that emitted may emit again on this frame
        return [
            [Hypothesis(tuple(tk), float(s))] for tk, s in zip(tokens, scores.tolist(), strict=True)
        ]


class ModifiedBeamSearch(SearchMethod):
    """Modified beam search batched over utterances, with up to ``max_sym_per_frame`` non-blank
    symbols per encoder frame (1: icefall's ``modified_beam_search``).

    Per frame, the hypotheses of every utterance still running start "on the frame". Up to
    ``max_sym_per_frame`` times: one joiner call scores every hypothesis on the frame (all
    utterances at once); per utterance, the ``beam`` best of (its hypotheses already moved to
    the next frame) + (every on-frame hypothesis x every token) survive (one tensor top-k over a
    (B, K*V + K') matrix padded with -inf); a blank moves a hypothesis to the next frame, a
    non-blank token keeps it on the frame, except at the last step, where it moves it too (so
    ``max_sym_per_frame=1`` is the one-symbol-per-frame search). One predictor call per step
    extends the hypotheses that stay on the frame, and one per frame those that moved to the
    next frame with a token (survivors only). The frame ends when no hypothesis is left on it.
    Surviving hypotheses with the same token sequence in the same set (on the frame, or on the
    next frame, whatever step or path brought them there) are merged by log-sum-exp. Utterances
    past their last frame keep their hypotheses unchanged.

    Contextual biasing: see the module docstring (icefall's
    ``modified_beam_search(context_graph=...)``, bonus added before the top-k).
    """

    name = "modified_beam"
    supports_context = True

    def __init__(
        self, beam: int = 8, max_sym_per_frame: int = 1, length_bonus: float = 0.0
    ) -> None:
        if beam < 1 or max_sym_per_frame < 1:
            raise ValueError("beam and max_sym_per_frame must be >= 1")
        if not math.isfinite(length_bonus):
            raise ValueError(f"length_bonus must be finite, got {length_bonus}")
        self.beam = beam
        self.max_sym_per_frame = max_sym_per_frame
        self.length_bonus = length_bonus
        self._gates: torch.Tensor | None = None  # per search: see _token_gates

    @torch.no_grad()
    def __call__(self, model, feats, feat_lens, contexts: list[ContextGraph | None] | None = None):
        enc, enc_lens = model.transcribe(feats, feat_lens)
        if contexts is None:
            contexts = [None] * enc.shape[0]
        if len(contexts) != enc.shape[0]:
            raise ValueError(f"{len(contexts)} context graphs for {enc.shape[0]} utterances")
        return self.search_encoded(model, enc, enc_lens, contexts)

    @torch.no_grad()
    def search_one(
        self, model, enc: torch.Tensor, context: ContextGraph | None = None
    ) -> list[Hypothesis]:
        """enc: (T, J) -> hypotheses sorted best first (by score + context_score)."""
        lens = torch.tensor([enc.shape[0]], dtype=torch.long)
        return self.search_encoded(model, enc[None], lens, [context])[0]

    @torch.no_grad()
    def search_encoded(
        self,
        model,
        enc: torch.Tensor,
        enc_lens: torch.Tensor,
        contexts: list[ContextGraph | None] | None = None,
    ) -> list[list[Hypothesis]]:
        """enc: (N, T, J), enc_lens: (N,) -> per utterance, hypotheses sorted best first."""
        dev = enc.device
        n = enc.shape[0]
        if contexts is None:
            contexts = [None] * n
        biased = any(c is not None for c in contexts)
        blank_id = model.blank_id
        lens = [int(x) for x in enc_lens.tolist()]
        one = torch.ones(1, dtype=torch.long, device=dev)
        blank = torch.full((1, 1), blank_id, dtype=torch.long, device=dev)
        pred0, _, state0 = model.predict(blank, one, None)
        self._gates = _token_gates(model)
        # The predictor outputs and states of live hypotheses: rows of ``store_pred`` (M, J)
        # and of each tensor of ``store_state``; a hypothesis holds its row number.
        store_pred = pred0[:, 0]
        store_state = [list(layer) for layer in state0]
        # per utterance: tokens -> [am score, store row, (bonus earned, graph state) or None,
        # parent row, token]; store row -1: the predictor has not run yet (parent, token)
        hyps: list[dict[tuple[int, ...], list]] = [
            {(): [0.0, 0, None if c is None else (0.0, c.root), -1, -1]} for c in contexts
        ]
        t_max = max(lens, default=0)
        for t in range(t_max):
            active = [u for u in range(n) if t < lens[u]]
            enc_t = enc[:, t]
            # hypotheses on the frame, flat: rows of one utterance are contiguous
            cur = [(u, h, e) for u in active for h, e in hyps[u].items()]
            nxt: list[dict[tuple[int, ...], list]] = [{} for _ in range(n)]
            for step in range(self.max_sym_per_frame):
                if not cur:
                    break
                last = step == self.max_sym_per_frame - 1
                cur, store_pred, store_state = self._step(
                    model, enc_t, cur, nxt, contexts, last, biased, store_pred, store_state
                )
            for u in active:
                hyps[u] = nxt[u]
            # keep only the rows of the hypotheses of the next frame; run the predictor on
            # those that moved there with a token (none for utterances that end here)
            live = [e for u in active if t + 1 < lens[u] for e in hyps[u].values()]
            kept = [e for e in live if e[1] >= 0]
            todo = [e for e in live if e[1] < 0]
            idx = torch.tensor([e[1] for e in kept], dtype=torch.long, device=dev)
            new_pred = store_pred.index_select(0, idx)
            new_state = [[s.index_select(0, idx) for s in layer] for layer in store_state]
            if todo:
                out, nst = self._predict(model, todo, store_state)
                new_pred = torch.cat([new_pred, out])
                new_state = [
                    [torch.cat([s, ns]) for s, ns in zip(layer, nlayer, strict=True)]
                    for layer, nlayer in zip(new_state, nst, strict=True)
                ]
            store_pred, store_state = new_pred, new_state
            for j, e in enumerate(kept + todo):
                e[1] = j
        out: list[list[Hypothesis]] = []
        lb = self.length_bonus
        for u, context in enumerate(contexts):
            nbest = [Hypothesis(h, e[0], length_score=lb * len(h)) for h, e in hyps[u].items()]
            if context is not None:
                for hyp in nbest:
                    earned, node = hyps[u][hyp.tokens][2]
                    hyp.context_score = earned + context.finalize(node)[0]
            out.append(sorted(nbest, key=lambda hyp: -hyp.total))
        return out

    def _step(self, model, enc_t, cur, nxt, contexts, last, biased, store_pred, store_state):
        """One symbol step of one frame for every utterance: score ``cur`` (list of (utt,
        tokens, entry)), keep the beam per utterance (with what ``nxt`` holds), merge the
        blank-extended (and at the ``last`` step also the token-extended) hypotheses into
        ``nxt`` (their predictor runs at the end of the frame), run the predictor on those that
        stay on the frame. Returns the hypotheses still on the frame and the grown store."""
        dev = enc_t.device
        blank_id = model.blank_id
        r = len(cur)
        rows = torch.tensor([e[1] for _, _, e in cur], dtype=torch.long, device=dev)
        utts = torch.tensor([u for u, _, _ in cur], dtype=torch.long, device=dev)
        preds = store_pred.index_select(0, rows)  # (R, J)
        encs = enc_t.index_select(0, utts)  # (R, J)
        ones = torch.ones(r, dtype=torch.long, device=dev)
        logits, _, _ = model.join(encs[:, None], ones, preds[:, None], ones)
        logp = logits[:, 0, 0].log_softmax(-1)  # (R, V)
        v = logp.shape[1]
        base = torch.tensor([e[0] for _, _, e in cur], dtype=logp.dtype, device=dev)
        am = base[:, None] + logp  # (R, V)
        total = am
        if self.length_bonus:  # per token of the hypothesis after this step
            lens = torch.tensor([len(h) for _, h, _ in cur], dtype=am.dtype, device=dev)
            grow = torch.ones(v, dtype=am.dtype, device=dev)
            grow[blank_id] = 0.0
            total = total + self.length_bonus * (lens[:, None] + grow)
        if biased:
            zeros = torch.zeros(v, dtype=torch.float32)
            bonus = [
                zeros if e[2] is None else contexts[u].step_scores(e[2][1], v, blank_id)
                for u, _, e in cur
            ]
            earned = torch.tensor([0.0 if e[2] is None else e[2][0] for _, _, e in cur])
            total = total + (earned[:, None] + torch.stack(bonus)).to(dev)
        # per utterance: slot a, first row, row count; next-frame hypotheses so far
        groups: list[tuple[int, int, int]] = []  # (utt, first row, count)
        for i, (u, _, _) in enumerate(cur):
            if groups and groups[-1][0] == u:
                groups[-1] = (u, groups[-1][1], groups[-1][2] + 1)
            else:
                groups.append((u, i, 1))
        a_n = len(groups)
        kmax = max(c for _, _, c in groups)
        pos = [a * kmax + i for a, (_, _, c) in enumerate(groups) for i in range(c)]
        pos_t = torch.tensor(pos, dtype=torch.long, device=dev)
        olds = [list(nxt[u].items()) for u, _, _ in groups]
        n_old = max(len(o) for o in olds)
        width = kmax * v

        def padded(x: torch.Tensor, old_scores: list[list[float]]) -> torch.Tensor:
            mat = torch.full((a_n * kmax, v), -math.inf, dtype=x.dtype, device=dev)
            mat.index_copy_(0, pos_t, x)
            mat = mat.view(a_n, width)
            if n_old:
                tail = [s + [-math.inf] * (n_old - len(s)) for s in old_scores]
                mat = torch.cat([mat, torch.tensor(tail, dtype=x.dtype, device=dev)], 1)
            return mat

        old_am = [[e[0] for _, e in o] for o in olds]
        shaped = biased or self.length_bonus != 0  # the pruning score is not the am score
        old_total = old_am
        if shaped:
            lb = self.length_bonus
            old_total = [
                [e[0] + (0.0 if e[2] is None else e[2][0]) + lb * len(h) for h, e in o]
                for o in olds
            ]
        k = min(self.beam, width + n_old)
        top = padded(total, old_total).topk(k, dim=1)
        top_total = top.values.tolist()
        top_am = padded(am, old_am).gather(1, top.indices).tolist() if shaped else top_total
        top_i = top.indices.tolist()
        new_cur: dict[tuple[int, tuple[int, ...]], list] = {}
        pending: list[list] = []  # entries staying on the frame: the predictor runs now
        for a, (u, first, _) in enumerate(groups):
            context = contexts[u]
            old = olds[a]
            merged: dict[tuple[int, ...], list] = {}
            stay: dict[tuple[int, ...], list] = {}
            for total_s, score, idx in zip(top_total[a], top_am[a], top_i[a], strict=True):
                if total_s == -math.inf:  # padding: fewer candidates than the beam
                    break
                if idx >= width:  # already on the next frame (its own float, not the top-k's)
                    h, e = old[idx - width]
                    got = merged.get(h)
                    if got is None:
                        merged[h] = e
                    else:
                        got[0] = logaddexp(got[0], e[0])
                    continue
                else:
                    p, tok = divmod(idx, v)
                    _, h0, e0 = cur[first + p]
                    if tok == blank_id:
                        h, target, ctx, parent, tok = h0, merged, e0[2], e0[1], -1
                    else:
                        h = h0 + (tok,)
                        target, parent = (merged if last else stay), e0[1]
                        ctx = None
                        if context is not None and h not in target:
                            earned, node = e0[2]
                            delta, node, _ = context.forward_one_step(node, tok)
                            ctx = (earned + delta, node)
                got = target.get(h)
                if got is not None:
                    got[0] = logaddexp(got[0], score)
                    continue
                if tok < 0:
                    target[h] = [score, parent, ctx, -1, -1]
                else:  # the predictor runs at the end of the step (frame) for stay (merged)
                    entry = target[h] = [score, -1, ctx, parent, tok]
                    if target is stay:
                        pending.append(entry)
            nxt[u] = merged
            for h, e in stay.items():
                new_cur[(u, h)] = e
        if pending:
            out, nst = self._predict(model, pending, store_state)
            m = store_pred.shape[0]
            store_pred = torch.cat([store_pred, out])
            store_state = [
                [torch.cat([s, ns]) for s, ns in zip(layer, nlayer, strict=True)]
                for layer, nlayer in zip(store_state, nst, strict=True)
            ]
            for j, entry in enumerate(pending):
                entry[1] = m + j
        return [(u, h, e) for (u, h), e in new_cur.items()], store_pred, store_state

    def _predict(self, model, entries: list[list], store_state):
        """Predictor outputs (P, J) and states of ``entries`` (parent row, token)."""
        dev = store_state[0][0].device
        parents = torch.tensor([e[3] for e in entries], dtype=torch.long, device=dev)
        toks = torch.tensor([e[4] for e in entries], dtype=torch.long, device=dev)
        st = [[s.index_select(0, parents) for s in layer] for layer in store_state]
        if self._gates is not None:
            return _lstm_predict(model.predictor, self._gates, toks, st)
        ones = torch.ones(len(entries), dtype=torch.long, device=dev)
        out, _, nst = model.predict(toks[:, None], ones, st)
        return out[:, 0], nst


def _token_gates(model) -> torch.Tensor | None:
    """(V, 4H) first-layer LSTM input gates of every token, ``x2g(LN(embedding))``, if the
    predictor is torchaudio's ``_Predictor`` (else None: the search calls ``model.predict``)."""
    pred = getattr(model, "predictor", None)
    if not isinstance(pred, _Predictor) or pred.training:
        return None
    if not all(isinstance(layer, _CustomLSTM) for layer in pred.lstm_layers):
        return None
    return pred.lstm_layers[0].x2g(pred.input_layer_norm(pred.embedding.weight))


def _lstm_predict(pred, gates0: torch.Tensor, toks: torch.Tensor, state):
    """``_Predictor.forward`` for one step of tokens ``toks`` (P,) from ``state``, with the
    first layer's input gates looked up in ``gates0`` (see :func:`_token_gates`).

    Returns:
        output (P, J), new state (list per layer of [h, c]).
    """
    x = None
    new_state = []
    for li, lstm in enumerate(pred.lstm_layers):
        h, c = state[li]
        g = gates0.index_select(0, toks) if li == 0 else lstm.x2g(x)
        g = lstm.g_norm(g + F.linear(h, lstm.p2g.weight))
        i_g, f_g, c_g, o_g = g.chunk(4, 1)
        c = f_g.sigmoid() * c + i_g.sigmoid() * c_g.tanh()
        c = lstm.c_norm(c)
        x = o_g.sigmoid() * c.tanh()
        new_state.append([x, c])
    return pred.output_layer_norm(pred.linear(x)), new_state


class _BlankLastAdapter(torch.nn.Module):
    """Presents a blank=0 transducer as blank=V-1: ``RNNTBeamSearch`` reads the blank
    log-probability at index -1 whatever its ``blank`` argument says (torchaudio 2.11), so
    without this it scores blank with the last BPE piece and emits runs of repeated tokens."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.model = model
        self.vocab_size = model.cfg.vocab_size

    def transcribe(self, sources, source_lengths):
        return self.model.transcribe(sources, source_lengths)

    def predict(self, targets, target_lengths, state):
        # adapter id j -> model id: V-1 (blank) -> 0, j -> j+1
        old = torch.where(targets == self.vocab_size - 1, torch.zeros_like(targets), targets + 1)
        return self.model.predict(old, target_lengths, state)

    def join(self, source_encodings, source_lengths, target_encodings, target_lengths):
        out, s_lens, t_lens = self.model.join(
            source_encodings, source_lengths, target_encodings, target_lengths
        )
        return torch.cat([out[..., 1:], out[..., :1]], dim=-1), s_lens, t_lens


class TorchaudioBeamSearch(SearchMethod):
    """``torchaudio.models.RNNTBeamSearch`` (reference; unbounded symbols per frame),
    run through :class:`_BlankLastAdapter`."""

    name = "torchaudio_beam"

    def __init__(self, beam: int = 8, step_max_tokens: int = 10) -> None:
        self.beam = beam
        self.step_max_tokens = step_max_tokens

    @torch.no_grad()
    def __call__(self, model, feats, feat_lens):
        adapter = _BlankLastAdapter(model)
        blank = adapter.vocab_size - 1
        search = RNNTBeamSearch(adapter, blank=blank, step_max_tokens=self.step_max_tokens)
        out = []
        for i in range(feats.shape[0]):
            hypos = search(feats[i : i + 1, : int(feat_lens[i])], feat_lens[i : i + 1], self.beam)
            merged: dict[tuple[int, ...], float] = {}
            for tokens, _, _, score in hypos:
                h = tuple(int(x) + 1 for x in tokens if int(x) != blank)
                merged[h] = score if h not in merged else logaddexp(merged[h], score)
            out.append([Hypothesis(h, s) for h, s in sorted(merged.items(), key=lambda kv: -kv[1])])
        return out


SEARCH_METHODS: dict[str, type[SearchMethod]] = {
    cls.name: cls for cls in (GreedySearch, ModifiedBeamSearch, TorchaudioBeamSearch)
}


def _options(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def build_search(name: str, **options: object) -> SearchMethod:
    """The registered search method ``name`` built from one shared set of options.

    A caller with one option set for every method (``decode-asr``: ``beam``,
    ``max_sym_per_frame``) passes them all; each method gets the ones its constructor takes.
    An option that no registered method takes is a misspelling and raises ``TypeError``.
    """
    if name not in SEARCH_METHODS:
        raise ValueError(f"unknown search method {name!r}; choose from {sorted(SEARCH_METHODS)}")
    known = set().union(*(_options(c) for c in SEARCH_METHODS.values()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"build_search: no search method takes {unknown}")
    cls = SEARCH_METHODS[name]
    return cls(**{k: v for k, v in options.items() if k in _options(cls)})
