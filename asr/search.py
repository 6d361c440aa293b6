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
from torchaudio.models.rnnt import _CustomLSTM, _Joiner, _Predictor

from asr.context_graph import ContextGraph
from asr.fusion import ShallowFusion
from asr.model import Transducer
from common.numeric import logaddexp


@dataclass
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # natural-log probability (am_score), without any biasing bonus
    context_score: float = 0.0  # contextual-biasing bonus (finalized)
    length_score: float = 0.0  # length bonus x tokens (ModifiedBeamSearch(length_bonus=...))
    fusion_score: float = 0.0  # LM shallow fusion (ModifiedBeamSearch(fusion=...))

    @property
    def total(self) -> float:
        """The score the search ranked by: acoustic score plus every bonus it pruned with."""
        return self.score + self.context_score + self.length_score + self.fusion_score


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

    ``score_beam``: of the ``beam`` best candidates of a step, only those whose pruning score is
    within ``score_beam`` of the utterance's best candidate survive (a beam in score as in
    Kaldi's and k2's searches, besides the beam in number; ``inf``: the ``beam`` best, always).

    ``blank_skip_threshold``: encoder frames whose CTC blank posterior (the model's auxiliary
    CTC head) is above it are dropped before the search (:func:`drop_blank_frames`); 1: none.

    ``merge_pieces`` (the text piece of each token id, e.g. the BPE pieces; "" for ids without
    text): hypotheses of a set whose pieces spell the same text (two tokenisations of the same
    words) are merged by log-sum-exp into the better one, as equal token sequences are, and a
    step's top-k takes up to ``2 * beam`` candidates so that ``beam`` hypotheses with distinct
    text survive: the n-best list then holds up to ``beam`` distinct texts. ``None``: merge equal
    token sequences only (icefall's rule).

    Contextual biasing: see the module docstring (icefall's
    ``modified_beam_search(context_graph=...)``, bonus added before the top-k).

    ``fusion`` (:class:`asr.fusion.ShallowFusion`): LM shallow fusion with a token LM over the
    ASR's BPE ids (icefall's ``modified_beam_search_lm_shallow_fusion``, optionally with the
    internal-LM subtraction): each predictor row also holds the LM state of its token history
    and the (V,) fusion row of the next token, computed in the same batched call as the
    predictor; every non-blank candidate adds its fusion score before the top-k, and the
    hypothesis keeps the sum apart (``fusion_score``). With both scales 0 the search is the
    unfused one, bit for bit (``tests/asr/test_fusion.py``).
    """

    name = "modified_beam"
    supports_context = True

    def __init__(
        self,
        beam: int = 8,
        max_sym_per_frame: int = 1,
        length_bonus: float = 0.0,
        score_beam: float = math.inf,
        blank_skip_threshold: float = 1.0,
        merge_pieces: list[str] | tuple[str, ...] | None = None,
        fusion: ShallowFusion | None = None,
    ) -> None:
        if beam < 1 or max_sym_per_frame < 1:
            raise ValueError("beam and max_sym_per_frame must be >= 1")
        if not 0.0 < blank_skip_threshold <= 1.0:
            raise ValueError(f"blank_skip_threshold must be in (0, 1], got {blank_skip_threshold}")
        if not math.isfinite(length_bonus):
            raise ValueError(f"length_bonus must be finite, got {length_bonus}")
        if not score_beam > 0:
            raise ValueError(f"score_beam must be > 0, got {score_beam}")
        self.beam = beam
        self.score_beam = score_beam
        self.blank_skip_threshold = blank_skip_threshold
        self.max_sym_per_frame = max_sym_per_frame
        self.length_bonus = length_bonus
        self.merge_pieces = None if merge_pieces is None else tuple(merge_pieces)
        self.fusion = fusion
        self._text: dict[tuple[int, ...], str] | None = None  # per search: tokens -> text
        self._gates: torch.Tensor | None = None  # per search: see _token_gates
        self._grow: torch.Tensor | None = None  # (V,): 1 per non-blank token, 0 for blank

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
        if self.blank_skip_threshold < 1.0:
            enc, enc_lens = drop_blank_frames(model, enc, enc_lens, self.blank_skip_threshold)
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
        self._grow = None
        self._text = None if self.merge_pieces is None else {(): ""}
        # the predictor outputs and states of the hypotheses; a hypothesis holds its row
        rec_weights = None  # torchaudio's LSTM predictor: recurrent projections kept per row
        if self._gates is not None:
            rec_weights = [lstm.p2g.weight for lstm in model.predictor.lstm_layers]
        extra0 = None
        if self.fusion is not None:
            if blank_id != 0:
                raise ValueError(f"LM shallow fusion needs blank id 0, the model's is {blank_id}")
            extra0 = self.fusion.start(lambda e, p: self._join(model, e, p), pred0[:, 0])
        store = _Store(pred0[:, 0], [list(layer) for layer in state0], rec_weights, extra0)
        # per utterance: tokens -> [am score, store row, (bonus earned, graph state) or None,
        # parent row, token, fusion score]; store row -1: the predictor has not run yet
        # (parent, token)
        hyps: list[dict[tuple[int, ...], list]] = [
            {(): [0.0, 0, None if c is None else (0.0, c.root), -1, -1, 0.0]} for c in contexts
        ]
        t_max = max(lens, default=0)
        for t in range(t_max):
            active = [u for u in range(n) if t < lens[u]]
            enc_t = enc[:, t]
            # hypotheses on the frame, grouped by utterance: [(utt, [(tokens, entry), ...])]
            cur = [(u, list(hyps[u].items())) for u in active if hyps[u]]
            nxt: list[dict[tuple[int, ...], list]] = [{} for _ in range(n)]
            for step in range(self.max_sym_per_frame):
                if not cur:
                    break
                last = step == self.max_sym_per_frame - 1
                cur = self._step(model, enc_t, cur, nxt, contexts, last, biased, store)
            for u in active:
                hyps[u] = nxt[u]
            # run the predictor on the hypotheses that moved to the next frame with a token
            # (none for utterances that end here); now and then drop the rows of the others
            live = [e for u in active if t + 1 < lens[u] for e in hyps[u].values()]
            todo = [e for e in live if e[1] < 0]
            if todo:
                m = store.append(*self._predict(model, todo, store))
                for j, e in enumerate(todo):
                    e[1] = m + j
            if store.size > _COMPACT_FACTOR * len(live) + _COMPACT_SLACK:
                store.compact([e[1] for e in live])
                for j, e in enumerate(live):
                    e[1] = j
        out: list[list[Hypothesis]] = []
        lb = self.length_bonus
        for u, context in enumerate(contexts):
            nbest = [
                Hypothesis(h, e[0], length_score=lb * len(h), fusion_score=e[5])
                for h, e in hyps[u].items()
            ]
            if context is not None:
                for hyp in nbest:
                    earned, node = hyps[u][hyp.tokens][2]
                    hyp.context_score = earned + context.finalize(node)[0]
            out.append(sorted(nbest, key=lambda hyp: -hyp.total))
        return out

    def _step(self, model, enc_t, cur, nxt, contexts, last, biased, store):
        """One symbol step of one frame for every utterance: score ``cur`` (per utterance:
        (utt, [(tokens, entry), ...])), keep the beam per utterance (with what ``nxt`` holds),
        merge the blank-extended (and at the ``last`` step also the token-extended) hypotheses
        into ``nxt`` (their predictor runs at the end of the frame), run the predictor on those
        that stay on the frame (their rows appended to ``store``). Returns the hypotheses still
        on the frame, grouped as ``cur``."""
        dev = enc_t.device
        blank_id = model.blank_id
        lb = self.length_bonus
        counts = [len(g) for _, g in cur]
        flat = [e for _, g in cur for _, e in g]
        r = len(flat)
        # one tensor for the store rows and utterances of the R rows, one for their scores
        ids = torch.tensor(
            [e[1] for e in flat] + [u for u, g in cur for _ in g],
            dtype=torch.long,
            device=dev,
        )
        preds = store.pred.index_select(0, ids[:r])  # (R, J)
        encs = enc_t.index_select(0, ids[r:])  # (R, J)
        logp = self._join(model, encs, preds)  # (R, V)
        v = logp.shape[1]
        if lb:
            lens = [float(len(h)) for _, g in cur for h, _ in g]
            both = torch.tensor([e[0] for e in flat] + lens, dtype=logp.dtype, device=dev)
            am = both[:r, None] + logp  # (R, V)
            if self._grow is None or self._grow.shape[0] != v:  # 1 per non-blank token
                self._grow = torch.ones(v, dtype=am.dtype, device=dev)
                self._grow[blank_id] = 0.0
            # per token of the hypothesis after this step
            total = am + lb * (both[r:, None] + self._grow)
        else:
            base = torch.tensor([e[0] for e in flat], dtype=logp.dtype, device=dev)
            am = total = base[:, None] + logp  # (R, V)
        fused = self.fusion is not None
        if fused:  # the fusion score so far + each token's (blank: 0)
            earned_f = torch.tensor([e[5] for e in flat], dtype=logp.dtype, device=dev)
            fus = earned_f[:, None] + store.extra[0].index_select(0, ids[:r]).to(logp.dtype)
            total = total + fus
        if biased:
            zeros = torch.zeros(v, dtype=torch.float32)
            bonus = [
                zeros if e[2] is None else contexts[u].step_scores(e[2][1], v, blank_id)
                for u, g in cur
                for _, e in g
            ]
            earned = torch.tensor([0.0 if e[2] is None else e[2][0] for e in flat])
            total = total + (earned[:, None] + torch.stack(bonus)).to(dev)
        # per utterance a row of kmax * V candidates (-inf padded) + its next-frame hypotheses
        a_n = len(cur)
        kmax = max(counts)
        olds = [list(nxt[u].items()) for u, _ in cur]
        n_old = max(len(o) for o in olds)
        width = kmax * v
        old_am = [[e[0] for _, e in o] for o in olds]
        shaped = biased or lb != 0 or fused  # the pruning score is not the am score
        scores, old_scores = [total], [old_am]
        if shaped:  # the pruning score, then the am score
            scores.append(am)
            old_scores.insert(
                0,
                [
                    [e[0] + (0.0 if e[2] is None else e[2][0]) + lb * len(h) + e[5] for h, e in o]
                    for o in olds
                ],
            )
        if fused:  # then the fusion score
            scores.append(fus)
            old_scores.append([[e[5] for _, e in o] for o in olds])
        x = torch.stack(scores)  # (S, R, V)
        if r == a_n * kmax:  # every utterance has kmax rows: no padding
            mat = x.view(len(scores), a_n, width)
        else:
            pos = [a * kmax + i for a, c in enumerate(counts) for i in range(c)]
            mat = torch.full((len(scores), a_n * kmax, v), -math.inf, dtype=x.dtype, device=dev)
            mat.index_copy_(1, torch.tensor(pos, dtype=torch.long, device=dev), x)
            mat = mat.view(len(scores), a_n, width)
        if n_old:
            pad = [[sc + [-math.inf] * (n_old - len(sc)) for sc in s_] for s_ in old_scores]
            mat = torch.cat([mat, torch.tensor(pad, dtype=x.dtype, device=dev)], 2)
        text, pieces = self._text, self.merge_pieces
        if pieces is not None and len(pieces) != v:
            raise ValueError(f"merge_pieces has {len(pieces)} pieces for {v} token ids")
        k = min(self.beam if text is None else 2 * self.beam, width + n_old)
        top = mat[0].topk(k, dim=1)
        top_total = top.values.tolist()
        top_am = mat[1].gather(1, top.indices).tolist() if shaped else top_total
        top_fus = mat[2].gather(1, top.indices).tolist() if fused else None
        top_i = top.indices.tolist()
        new_cur: list[tuple[int, list]] = []
        pending: list[list] = []  # entries staying on the frame: the predictor runs now
        ninf = -math.inf
        for a, (u, g) in enumerate(cur):
            context = contexts[u]
            old = olds[a]
            merged: dict[tuple[int, ...], list] = {}
            stay: dict[tuple[int, ...], list] = {}
            # the entries by merge key: the token sequence, or its text with merge_pieces
            merged_by: dict = merged if text is None else {}
            stay_by: dict = stay if text is None else {}
            floor = top_total[a][0] - self.score_beam
            ranked = zip(top_total[a], top_am[a], top_i[a], strict=True)
            for j, (total_s, score, idx) in enumerate(ranked):
                if total_s < floor or total_s == ninf:  # too far below the best; padding
                    break
                full = text is not None and len(merged) + len(stay) >= self.beam
                if idx >= width:  # already on the next frame (its own float, not the top-k's)
                    h, e = old[idx - width]
                    key = h if text is None else text[h]
                    got = merged_by.get(key)
                    if got is None:
                        if full:
                            break
                        merged[h] = merged_by[key] = e
                    else:
                        got[0] = logaddexp(got[0], e[0])
                    continue
                p, tok = divmod(idx, v)
                h0, e0 = g[p]
                if tok == blank_id:  # to the next frame, same tokens, same predictor row
                    key = h0 if text is None else text[h0]
                    got = merged_by.get(key)
                    if got is None:
                        if full:
                            break
                        merged[h0] = merged_by[key] = [score, e0[1], e0[2], -1, -1, e0[5]]
                    else:
                        got[0] = logaddexp(got[0], score)
                    continue
                h = h0 + (tok,)
                target, target_by = (merged, merged_by) if last else (stay, stay_by)
                if text is None:
                    key = h
                else:
                    key = text.get(h)
                    if key is None:
                        key = text[h] = text[h0] + pieces[tok]
                got = target_by.get(key)
                if got is not None:
                    got[0] = logaddexp(got[0], score)
                    continue
                if full:
                    break
                ctx = None
                if context is not None:
                    earned, node = e0[2]
                    delta, node, _ = context.forward_one_step(node, tok)
                    ctx = (earned + delta, node)
                # the predictor runs at the end of the step (stay) or of the frame (merged)
                fus_s = top_fus[a][j] if top_fus is not None else 0.0
                entry = target[h] = target_by[key] = [score, -1, ctx, e0[1], tok, fus_s]
                if not last:
                    pending.append(entry)
            nxt[u] = merged
            if stay:
                new_cur.append((u, list(stay.items())))
        if pending:
            m = store.append(*self._predict(model, pending, store))
            for j, entry in enumerate(pending):
                entry[1] = m + j
        return new_cur

    def _join(self, model, encs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """Joiner log-probabilities (R, V) of R (encoder frame, predictor output) pairs: the
        torchaudio ``_Joiner``'s layers called on (R, J) directly (``model.join`` otherwise)."""
        joiner = getattr(model, "joiner", None)
        if isinstance(joiner, _Joiner) and not joiner.training:
            return joiner.linear(joiner.activation(encs + preds)).log_softmax(-1)
        ones = torch.ones(encs.shape[0], dtype=torch.long, device=encs.device)
        logits, _, _ = model.join(encs[:, None], ones, preds[:, None], ones)
        return logits[:, 0, 0].log_softmax(-1)

    def _predict(self, model, entries: list[list], store: _Store):
        """Predictor outputs (P, J), states and store extras (the fusion rows) of ``entries``
        (parent row, token)."""
        pred, state = self._predictor(model, entries, store)
        if self.fusion is None:
            return pred, state, None
        dev = store.pred.device
        ids = torch.tensor([e[3] for e in entries] + [e[4] for e in entries], device=dev)
        parents, toks = ids[: len(entries)], ids[len(entries) :]
        lm_state = [s.index_select(0, parents) for s in store.extra[1:]]
        join = lambda e, p: self._join(model, e, p)  # noqa: E731
        return pred, state, self.fusion.rows(join, pred, toks, lm_state)

    def _predictor(self, model, entries: list[list], store: _Store):
        """Predictor outputs (P, J) and states of ``entries`` (parent row, token)."""
        dev = store.pred.device
        store_state = store.state
        if self._gates is not None:
            # the recurrent projection depends on the parent alone: once per distinct parent
            uniq: dict[int, int] = {}
            inv = [uniq.setdefault(e[3], len(uniq)) for e in entries]
            ids = torch.tensor(
                list(uniq) + inv + [e[4] for e in entries], dtype=torch.long, device=dev
            )
            n_u, n_p = len(uniq), len(entries)
            parents, toks = ids[:n_u], ids[n_u + n_p :]
            back = None if n_u == n_p else ids[n_u : n_u + n_p]
            cells = [[None, c.index_select(0, parents)] for _, c in store_state]
            rec = store.recurrent(parents)
            return _lstm_predict(model.predictor, self._gates, toks, cells, back, rec)
        parents = torch.tensor([e[3] for e in entries], dtype=torch.long, device=dev)
        toks = torch.tensor([e[4] for e in entries], dtype=torch.long, device=dev)
        st = [[s.index_select(0, parents) for s in layer] for layer in store_state]
        ones = torch.ones(len(entries), dtype=torch.long, device=dev)
        out, _, nst = model.predict(toks[:, None], ones, st)
        return out[:, 0], nst


def drop_blank_frames(
    model, enc: torch.Tensor, enc_lens: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder frames (N, T, J) whose CTC blank posterior is at most ``threshold``, packed
    to the left in their order, and their counts (N,): the frame reduction of icefall's
    CTC blank-skip recipe (``FrameReducer``; Yang et al., "Blank-regularized CTC for frame
    skipping in neural Transducer", Interspeech 2023) at decoding time only, with the model's
    auxiliary CTC head (``train-asr --ctc-weight``). The RNN-T search then runs on the kept
    frames: a frame the CTC head is sure is blank costs no joiner or predictor call. An
    utterance may keep no frame (empty hypothesis)."""
    head = getattr(model, "ctc_head", None)
    if head is None:
        raise ValueError("blank skipping needs a model with a CTC head (asr.model.Transducer)")
    t = enc.shape[1]
    blank = head(enc).log_softmax(-1)[..., model.blank_id]  # (N, T)
    valid = torch.arange(t, device=enc.device)[None, :] < enc_lens[:, None]
    keep = valid & (blank <= math.log(threshold))
    lens = keep.sum(1)
    # kept frames first, each group in time order (a stable sort of 0 = keep, 1 = drop)
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    t_new = int(lens.max()) if lens.numel() else 0
    order = order[:, :t_new]
    packed = enc.gather(1, order[..., None].expand(-1, -1, enc.shape[2]))
    return packed, lens.to(enc_lens.dtype)


#: The search drops the predictor rows of dead hypotheses once the store holds more than
#: ``_COMPACT_FACTOR`` x (live hypotheses) + ``_COMPACT_SLACK`` rows (not every frame: a
#: compaction copies every live row).
_COMPACT_FACTOR, _COMPACT_SLACK = 8, 256


class _Store:
    """Predictor outputs (rows of ``pred``, (capacity, J)) and states (rows of each tensor of
    ``state``, per layer [h, c]) of search hypotheses, in buffers that grow by doubling; rows
    ``[0, size)`` are used. A hypothesis refers to its row number until :meth:`compact`.

    With ``rec_weights`` (per LSTM layer, the (4H, H) recurrent weights ``p2g``), the store also
    keeps each row's recurrent projections ``h @ p2g.T``, computed the first time the row is a
    parent (:meth:`recurrent`) and then reused: a hypothesis is extended on many frames, and the
    projection, the predictor's largest matrix product, depends on its state alone."""

    def __init__(
        self,
        pred: torch.Tensor,
        state: list[list[torch.Tensor]],
        rec_weights: list[torch.Tensor] | None = None,
        extra: list[torch.Tensor] | None = None,
    ) -> None:
        self.size = 0
        self.pred = pred.new_empty((0, pred.shape[1]))
        self.state = [[s.new_empty((0, s.shape[1])) for s in layer] for layer in state]
        self.extra = [x.new_empty((0, *x.shape[1:])) for x in extra or []]
        self.rec_weights = rec_weights or []
        self.rec = [pred.new_empty((0, w.shape[0])) for w in self.rec_weights]
        self.has_rec = torch.zeros(0, dtype=torch.bool, device=pred.device)
        self.append(pred, state, extra)

    def _row_buffers(self):
        """The buffers :meth:`append` is given rows of: ``pred``, ``state``, ``extra``."""
        return [self.pred] + [s for layer in self.state for s in layer] + self.extra

    def _buffers(self):
        return self._row_buffers() + self.rec + [self.has_rec]

    def append(
        self,
        pred: torch.Tensor,
        state: list[list[torch.Tensor]],
        extra: list[torch.Tensor] | None = None,
    ) -> int:
        """Add rows (``extra``: one tensor per buffer of the constructor's ``extra``); returns
        the number of the first."""
        m, p = self.size, pred.shape[0]
        if m + p > self.pred.shape[0]:
            cap = max(2 * self.pred.shape[0], m + p, 256)
            grown = []
            for buf in self._buffers():
                new = buf.new_empty((cap, *buf.shape[1:]))
                new[:m] = buf[:m]
                grown.append(new)
            self._set(grown)
        rows = [pred] + [s for ly in state for s in ly] + list(extra or [])
        for buf, x in zip(self._row_buffers(), rows, strict=True):
            buf[m : m + p] = x
        self.has_rec[m : m + p] = False
        self.size = m + p
        return m

    def recurrent(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the recurrent projections (len(rows), 4H) of ``rows`` (needs
        ``rec_weights``); those not computed yet are computed now, once."""
        need = rows[~self.has_rec.index_select(0, rows)]
        if need.numel():
            need = need.unique()  # a row may be asked for twice
            for (h, _), w, rec in zip(self.state, self.rec_weights, self.rec, strict=True):
                rec.index_copy_(0, need, F.linear(h.index_select(0, need), w))
            self.has_rec.index_fill_(0, need, True)
        return [rec.index_select(0, rows) for rec in self.rec]

    def compact(self, rows: list[int]) -> None:
        """Keep only ``rows``, renumbered 0.. in this order."""
        idx = torch.tensor(rows, dtype=torch.long, device=self.pred.device)
        for buf in self._buffers():
            buf[: len(rows)] = buf.index_select(0, idx)
        self.size = len(rows)

    def _set(self, bufs: list[torch.Tensor]) -> None:
        it = iter(bufs)
        self.pred = next(it)
        self.state = [[next(it) for _ in layer] for layer in self.state]
        self.extra = [next(it) for _ in self.extra]
        self.rec = [next(it) for _ in self.rec]
        self.has_rec = next(it)
        assert next(it, None) is None


def _token_gates(model) -> torch.Tensor | None:
    """(V, 4H) first-layer LSTM input gates of every token, ``x2g(LN(embedding))``, if the
    predictor is torchaudio's ``_Predictor`` (else None: the search calls ``model.predict``)."""
    pred = getattr(model, "predictor", None)
    if not isinstance(pred, _Predictor) or pred.training:
        return None
    if not all(isinstance(layer, _CustomLSTM) for layer in pred.lstm_layers):
        return None
    return pred.lstm_layers[0].x2g(pred.input_layer_norm(pred.embedding.weight))


def _lstm_predict(pred, gates0: torch.Tensor, toks: torch.Tensor, state, back=None, rec=None):
    """``_Predictor.forward`` for one step of tokens ``toks`` (P,) from ``state``, with the
    first layer's input gates looked up in ``gates0`` (see :func:`_token_gates`).

    ``back`` (P,): row ``i`` continues parent ``back[i]`` of ``state`` (rows = distinct parents,
    whose recurrent projections are computed once); None: ``state`` has one row per token.
    ``rec``: per layer the parents' recurrent projections ``h @ p2g.T``, already computed
    (:meth:`_Store.recurrent`; ``state``'s ``h`` is then not read).

    Returns:
        output (P, J), new state (list per layer of [h, c]).
    """
    x = None
    new_state = []
    for li, lstm in enumerate(pred.lstm_layers):
        h, c = state[li]
        r = F.linear(h, lstm.p2g.weight) if rec is None else rec[li]
        if back is not None:
            r, c = r.index_select(0, back), c.index_select(0, back)
        g = gates0.index_select(0, toks) if li == 0 else lstm.x2g(x)
        g = lstm.g_norm(g + r)
        i_g, f_g, _, o_g = g.sigmoid().chunk(4, 1)  # one call for the three gates
        c_g = g[:, 2 * c.shape[1] : 3 * c.shape[1]].tanh()
        c = f_g * c + i_g * c_g
        c = lstm.c_norm(c)
        x = o_g * c.tanh()
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
