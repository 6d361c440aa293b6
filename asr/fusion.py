"""LM shallow fusion for the RNN-T's first pass: a token LM over the ASR's own BPE ids.

The rescoring LMs (``lm/``) have their own subword model and score word strings after the
search; a fusion LM must score the search's partial hypotheses token by token, so it shares
the ASR's BPE model (icefall's RNN-LM for shallow fusion does the same). Ids are the ASR
tokenizer's (``asr.data.Tokenizer``: 0 = blank, never an LM input or target; 1 = ``<sos/eos>``;
2 = ``<unk>``); a sentence is ``<sos> t1 .. tn`` predicting ``t1 .. tn <eos>``.

In ``modified_beam`` (:class:`asr.search.ModifiedBeamSearch` ``fusion=``), every non-blank
token ``y`` extending a hypothesis adds

    lm_scale * log P_LM(y | history) - ilm_scale * log P_ILM(y | history)

to the score the beam is pruned and the n-best ranked on, kept apart from the acoustic score
as the hypothesis' ``fusion_score`` (Hannun et al. 2014, Gulcehre et al. 2015 for shallow
fusion; Meng et al., "Internal language model estimation for domain-adaptive end-to-end speech
recognition", SLT 2021, for the internal-LM (ILM) subtraction: the RNN-T's joiner run on the
predictor output alone, its blank left out and the rest renormalised). The LM's end-of-sentence
probability is not added (icefall's ``modified_beam_search_lm_shallow_fusion`` adds none either).

Usage:
    lm = load_token_lm("exp/asr/token_lm/best.pt", tokenizer)   # checks the BPE pieces agree
    fusion = ShallowFusion(lm, lm_scale=0.3, ilm_scale=0.1)
    search = ModifiedBeamSearch(beam=20, fusion=fusion)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoint import CheckpointError, load_checkpoint
from common.io import InputError

SOS_ID = 1  # asr.data.Tokenizer's <sos/eos>
BLANK_ID = 0


@dataclass
class TokenLMConfig:
    """Size of the fusion LM (an LSTM; small: it runs once per hypothesis and token)."""

    embed_dim: int = field(default=256, metadata={"help": "token embedding size"})
    hidden_dim: int = field(default=512, metadata={"help": "LSTM hidden size"})
    num_layers: int = field(default=1, metadata={"help": "LSTM layers"})
    dropout: float = field(default=0.1, metadata={"help": "dropout (training only)"})

    def validate(self) -> None:
        """Raises :class:`InputError` (a ``ValueError``) naming the offending option."""
        if min(self.embed_dim, self.hidden_dim, self.num_layers) < 1:
            raise InputError("--embed-dim, --hidden-dim and --num-layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"--dropout must be in [0, 1), got {self.dropout}")


class TokenLM(nn.Module):
    """LSTM LM over the ASR's BPE ids; the output layer is tied to the input embedding through
    a projection (hidden -> embed) when the sizes differ."""

    def __init__(self, cfg: TokenLMConfig, vocab_size: int) -> None:
        super().__init__()
        cfg.validate()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.hidden_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.proj = (
            nn.Linear(cfg.hidden_dim, cfg.embed_dim)
            if cfg.hidden_dim != cfg.embed_dim
            else nn.Identity()
        )
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.proj(self.dropout(h)), self.embed.weight, self.out_bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (N, T) ids starting with ``<sos>``, right-padded -> logits (N, T, V); position
        t has read ``inputs[:, : t + 1]`` only (padding never changes real positions)."""
        h, _ = self.lstm(self.dropout(self.embed(inputs)))
        return self._logits(h)

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The zero state of ``n`` rows: per layer h (n, H) then c (n, H)."""
        z = torch.zeros(n, self.cfg.hidden_dim, device=device)
        return [z.clone() for _ in range(2 * self.cfg.num_layers)]

    def step(
        self, tokens: torch.Tensor, state: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Read ``tokens`` (P,) from ``state`` (rows first) -> (log P(next | .) (P, V), state)."""
        h0 = torch.stack(state[0::2])  # (L, P, H)
        c0 = torch.stack(state[1::2])
        out, (h, c) = self.lstm(self.embed(tokens)[:, None], (h0.contiguous(), c0.contiguous()))
        logp = self._logits(out[:, 0]).log_softmax(-1)
        new = [x for layer in range(h.shape[0]) for x in (h[layer], c[layer])]
        return logp, new


def token_lm_checkpoint(model: TokenLM, pieces: list[str]) -> dict[str, Any]:
    """What a fusion-LM checkpoint holds besides the trainer's state: config and BPE pieces."""
    return {"token_lm": {"config": dataclasses.asdict(model.cfg), "pieces": list(pieces)}}


def load_token_lm(path: str | Path, pieces: list[str] | None = None) -> TokenLM:
    """The fusion LM of a checkpoint (``train-token-lm``'s ``best.pt`` or ``epoch-N.pt``), in
    eval mode.

    Args:
        pieces: the ASR BPE model's pieces (``[sp.id_to_piece(i) for i in range(V)]``); the
            LM must have been trained with the same ones.

    Raises:
        CheckpointError: naming ``path``: unreadable, not a fusion-LM checkpoint, or trained
            with other BPE pieces.
    """
    ckpt = load_checkpoint(path)
    info = ckpt.get("token_lm")
    if not isinstance(info, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a fusion-LM checkpoint (train-token-lm)")
    try:
        cfg = TokenLMConfig(**info["config"])
        model = TokenLM(cfg, len(info["pieces"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: bad fusion-LM checkpoint ({e})") from None
    if pieces is not None and list(pieces) != list(info["pieces"]):
        raise CheckpointError(
            f"{path}: trained with another BPE model ({len(info['pieces'])} pieces) than the "
            f"ASR's ({len(pieces)} pieces)"
        )
    return model.eval()


class ShallowFusion:
    """The fusion scores of :class:`asr.search.ModifiedBeamSearch`: per predictor row (a token
    history) a (V,) row ``lm_scale * log P_LM - ilm_scale * log P_ILM`` with 0 for blank, and
    the LM state that produced it. With both scales 0 every row is 0 and the search is the
    unfused one, bit for bit."""

    def __init__(self, lm: TokenLM, lm_scale: float = 0.0, ilm_scale: float = 0.0) -> None:
        for name, x in (("lm_scale", lm_scale), ("ilm_scale", ilm_scale)):
            if not (x == x and abs(x) != float("inf")):
                raise ValueError(f"{name} must be finite, got {x}")
        self.lm, self.lm_scale, self.ilm_scale = lm, float(lm_scale), float(ilm_scale)

    def rows(
        self,
        join,
        preds: torch.Tensor,
        tokens: torch.Tensor,
        lm_state: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        """The store rows after reading ``tokens`` (P,) from ``lm_state`` (rows first):
        ``[fusion (P, V), *new LM state]``. ``join(encs, preds) -> (P, V) log-probs`` is the
        search's joiner; ``preds`` (P, J) the predictor outputs of the new rows (for the ILM)."""
        logp, state = self.lm.step(tokens, lm_state)
        fus = self.lm_scale * logp.float()
        if self.ilm_scale:
            ilm = join(torch.zeros_like(preds), preds)  # (P, V) with blank
            ilm = ilm[:, 1:] - ilm[:, 1:].logsumexp(-1, keepdim=True)  # blank left out
            fus[:, 1:] -= self.ilm_scale * ilm.float()
        fus[:, BLANK_ID] = 0.0
        return [fus, *state]

    def start(self, join, pred0: torch.Tensor) -> list[torch.Tensor]:
        """The rows of the empty hypothesis (``<sos>`` read; ``pred0`` (1, J))."""
        sos = torch.full((1,), SOS_ID, dtype=torch.long, device=pred0.device)
        return self.rows(join, pred0, sos, self.lm.initial_state(1, pred0.device))
