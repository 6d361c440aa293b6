"""RNN-T search methods behind a registry: batched greedy, modified beam search (batched over
the beam, at most one symbol per frame, as icefall's ``modified_beam_search``), and torchaudio's
``RNNTBeamSearch`` as the reference.

Every method maps encoder-side inputs to, per utterance, an n-best list of
:class:`Hypothesis` (token ids without blanks, log-probability score), best first.

References: Graves 2012 (RNN-T beam search); Kang et al., "Fast and parallel decoding for
transducer", ICASSP 2023 (one symbol per frame, modified beam search).

Contextual biasing (``modified_beam`` only, ``SearchMethod.supports_context``): given one
:class:`asr.context_graph.ContextGraph` (or None) per utterance, a hypothesis carries its graph
state and the bonus it earned; each non-blank token adds the graph's step score to the score
the beam is pruned on, and the end of the utterance gives back unfinished matches
(``ContextGraph.finalize``). Unlike icefall, which adds a token's bonus after the frame's top-k,
the bonus of every candidate token is added before it (one cached (V,) row per graph node), so
a boosted token can enter the beam on its own frame. The
output keeps the acoustic score (``score``) apart from the bonus (``context_score``) and ranks
by their sum. With every bonus 0 the search is the unbiased one, bit for bit
(``tests/asr/test_biasing.py``).

Usage:
    search = SEARCH_METHODS["modified_beam"](beam=8)
    search = build_search("greedy", beam=8, max_sym_per_frame=3)   # drops what greedy lacks
    nbests = search(model, feats, feat_lens)   # list (N) of list[Hypothesis]
    nbests = search(model, feats, feat_lens, contexts=[graph, None, ...])   # biased
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torchaudio.models import RNNTBeamSearch

from asr.context_graph import ContextGraph, ContextState
from asr.model import Transducer
from common.numeric import logaddexp


@dataclass
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # natural-log probability (am_score), without any biasing bonus
    context_score: float = 0.0  # contextual-biasing bonus (finalized); ranking: score + this

    @property
    def total(self) -> float:
        return self.score + self.context_score


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
    """Beam search with at most one symbol per frame; the beam's hypotheses are scored in one
    joiner call per frame and extended hypotheses in one predictor call. Hypotheses with the
    same token sequence are merged by log-sum-exp. Supports contextual biasing (see the module
    docstring; icefall's ``modified_beam_search(context_graph=...)``)."""

    name = "modified_beam"
    supports_context = True

    def __init__(self, beam: int = 8) -> None:
        self.beam = beam

    @torch.no_grad()
    def __call__(self, model, feats, feat_lens, contexts: list[ContextGraph | None] | None = None):
        enc, enc_lens = model.transcribe(feats, feat_lens)
        if contexts is None:
            contexts = [None] * enc.shape[0]
        if len(contexts) != enc.shape[0]:
            raise ValueError(f"{len(contexts)} context graphs for {enc.shape[0]} utterances")
        return [
            self.search_one(model, enc[i, : int(enc_lens[i])], contexts[i])
            for i in range(enc.shape[0])
        ]

    @torch.no_grad()
    def search_one(
        self, model, enc: torch.Tensor, context: ContextGraph | None = None
    ) -> list[Hypothesis]:
        """enc: (T, J) -> hypotheses sorted best first (by score + context_score)."""
        dev = enc.device
        one = torch.ones(1, dtype=torch.long, device=dev)
        blank = torch.full((1, 1), model.blank_id, dtype=torch.long, device=dev)
        pred, _, state = model.predict(blank, one, None)
        # hyp tokens -> (score, pred output (J,), state as list of list of (H,))
        hyps: dict[tuple[int, ...], float] = {(): 0.0}
        cache: dict[tuple[int, ...], tuple[torch.Tensor, list]] = {
            (): (pred[0, 0], [[s[0] for s in layer] for layer in state])
        }
        # hyp tokens -> (bonus earned so far, graph state); a function of the tokens alone, so
        # hypotheses merged by log-sum-exp share it
        ctx: dict[tuple[int, ...], tuple[float, ContextState]] = {}
        if context is not None:
            ctx[()] = (0.0, context.root)
        for t in range(enc.shape[0]):
            keys = list(hyps)
            k = len(keys)
            preds = torch.stack([cache[h][0] for h in keys])  # (K, J)
            ones = torch.ones(k, dtype=torch.long, device=dev)
            logits, _, _ = model.join(enc[t].expand(k, 1, -1), ones, preds[:, None], ones)
            logp = logits[:, 0, 0].log_softmax(-1)  # (K, V)
            v = logp.shape[1]
            base = torch.tensor([hyps[h] for h in keys], dtype=logp.dtype, device=dev)
            am = base[:, None] + logp  # (K, V)
            total = am
            if context is not None:
                rows = [context.step_scores(ctx[h][1], v, model.blank_id) for h in keys]
                earned = torch.tensor([ctx[h][0] for h in keys], dtype=logp.dtype)
                total = am + (earned[:, None] + torch.stack(rows)).to(dev)  # (K, V)
            top = total.flatten().topk(min(self.beam, total.numel()))
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
            cache = {h: cache[h] for h in hyps}  # the next frame extends only live hyps
        out_hyps = [Hypothesis(h, s) for h, s in hyps.items()]
        if context is not None:
            for hyp in out_hyps:
                earned, node = ctx[hyp.tokens]
                hyp.context_score = earned + context.finalize(node)[0]
        return sorted(out_hyps, key=lambda hyp: -hyp.total)


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
