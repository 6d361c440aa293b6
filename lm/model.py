"""The multitask rescoring LM: shared subword embedding + causal encoder + three heads.

Heads:
    * next-token prediction, output layer tied to the input embedding (a linear projection
      hidden -> embed is inserted when the sizes differ);
    * intent classification from a sentence vector ``s = [h_last ; mean_t h_t]`` (the causal
      state after the last subword and the mean over all positions);
    * slot filling, one BIO tag per word. ``slot_context="sentence"``: from ``[h_first(word) ;
      s]``, the encoder state at the word's **first subword** (it has read that subword and the
      left context) with the sentence vector (a summary of the right context).
      ``slot_context="bilstm"`` (default): a 1-layer BiLSTM, part of the slot head only, runs
      over the words' ``[h_first ; h_last]`` (states at the word's first and last subword) and
      its output is concatenated with ``s``. The shared encoder stays causal either way.

The encoder is causal (LSTM, as in the seed work, or a small Transformer with a causal mask),
so the LM score of a sentence never sees its future and right padding never changes the
states of real positions: batched scoring equals one-at-a-time scoring.

Usage:
    model = MultitaskLM(ModelConfig(), vocab_size=1000, num_intents=7, num_slot_tags=73)
    out = model(batch.inputs, batch.lengths, batch.word_pos)   # dict of logits
    lm = load_lm("exp/lm/pretrain/best.pt")    # lm.model, lm.tokenizer, lm.intents, lm.slot_tags
    model, tok = init_from_lm("exp/lm/pretrain/best.pt", ModelConfig(), intents, slot_tags, seed=42)
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoint import CheckpointError, load_checkpoint
from common.io import InputError
from lm.config import ModelConfig
from lm.tokenizer import LMTokenizer


class MultitaskLM(nn.Module):
    """Multitask LM of Yang et al., "Multi-task language modeling for improving speech
    recognition of rare words", ASRU 2021: next-token prediction + intent classification +
    slot filling on a shared encoder. Only the LM head is used to rescore."""

    def __init__(
        self, cfg: ModelConfig, vocab_size: int, num_intents: int = 0, num_slot_tags: int = 0
    ):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.num_intents = num_intents
        self.num_slot_tags = num_slot_tags
        e, h = cfg.embed_dim, cfg.hidden_dim
        self.embed = nn.Embedding(vocab_size, e)
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.arch == "lstm":
            self.encoder = nn.LSTM(
                e,
                h,
                num_layers=cfg.num_layers,
                batch_first=True,
                dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            )
            self.out_dim = h
        else:
            self.pos = nn.Embedding(cfg.max_len + 1, e)
            layer = nn.TransformerEncoderLayer(
                e, cfg.num_heads, h, cfg.dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
            self.final_norm = nn.LayerNorm(e)
            self.out_dim = e
        d = self.out_dim
        self.to_embed = nn.Linear(d, e) if d != e else nn.Identity()
        self.lm_bias = nn.Parameter(torch.zeros(vocab_size))
        if num_intents > 0:
            self.intent_head = nn.Sequential(
                nn.Dropout(cfg.dropout), nn.Linear(2 * d, d), nn.Tanh(), nn.Linear(d, num_intents)
            )
        if num_slot_tags > 0:
            slot_in = 3 * d
            if cfg.slot_context == "bilstm":
                # NLU-only right context over words; the LM path stays causal
                self.slot_rnn = nn.LSTM(2 * d, d // 2, batch_first=True, bidirectional=True)
                slot_in = 2 * (d // 2) + 2 * d
            self.slot_head = nn.Sequential(
                nn.Dropout(cfg.dropout),
                nn.Linear(slot_in, d),
                nn.Tanh(),
                nn.Linear(d, num_slot_tags),
            )

    @property
    def has_nlu_heads(self) -> bool:
        return self.num_intents > 0 and self.num_slot_tags > 0

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Causal encoder states.

        Args:
            inputs: (N, T) token ids starting with bos, right-padded.
        Returns:
            (N, T, D) states; position t has seen inputs[:, : t + 1] only.
        """
        assert inputs.dim() == 2, inputs.shape
        x = self.dropout(self.embed(inputs))  # (N, T, E)
        if self.cfg.arch == "lstm":
            h, _ = self.encoder(x)  # (N, T, H)
        else:
            t = inputs.size(1)
            if t > self.cfg.max_len + 1:
                raise ValueError(
                    f"sentence of {t - 1} subwords exceeds the Transformer's max_len "
                    f"{self.cfg.max_len}"
                )
            x = x + self.pos(torch.arange(t, device=inputs.device))[None]
            mask = nn.Transformer.generate_square_subsequent_mask(t, device=inputs.device)
            h = self.final_norm(self.encoder(x, mask=mask, is_causal=True))  # (N, T, E)
        return self.dropout(h)

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, T, D) states -> (N, T, V) next-token logits through the tied embedding."""
        return self.to_embed(h) @ self.embed.weight.t() + self.lm_bias

    def sentence_vector(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, T, D), (N,) -> (N, 2D): [state after the last subword ; mean over positions]."""
        n, t, _ = h.shape
        last = h[torch.arange(n, device=h.device), lengths - 1]  # (N, D)
        mask = (torch.arange(t, device=h.device)[None] < lengths[:, None]).unsqueeze(-1)
        mean = (h * mask).sum(1) / lengths[:, None].to(h.dtype)  # (N, D)
        return torch.cat([last, mean], dim=-1)

    def slot_logits(
        self,
        h: torch.Tensor,
        s: torch.Tensor,
        word_pos: torch.Tensor,
        word_end: torch.Tensor | None,
    ) -> torch.Tensor:
        """Per-word slot logits.

        Args:
            h: (N, T, D) encoder states; s: (N, 2D) sentence vectors.
            word_pos / word_end: (N, W) input positions of each word's first / last subword
                (padded words point at position 0; their logits are ignored).
        Returns:
            (N, W, S) logits.
        """
        n, w = word_pos.shape
        d = h.size(-1)
        first = h.gather(1, word_pos.unsqueeze(-1).expand(n, w, d))  # (N, W, D)
        if self.cfg.slot_context == "bilstm":
            end = word_end if word_end is not None else word_pos
            last = h.gather(1, end.unsqueeze(-1).expand(n, w, d))  # (N, W, D)
            # number of real words = positions > 0 (position 0 is bos, never a word)
            nw = (word_pos > 0).sum(1).clamp(min=1).cpu()  # (N,)
            packed = nn.utils.rnn.pack_padded_sequence(
                torch.cat([first, last], dim=-1), nw, batch_first=True, enforce_sorted=False
            )
            ctx, _ = self.slot_rnn(packed)
            ctx, _ = nn.utils.rnn.pad_packed_sequence(ctx, batch_first=True, total_length=w)
            first = ctx  # (N, W, 2 * (D // 2))
        feats = torch.cat([first, s.unsqueeze(1).expand(n, w, s.size(-1))], dim=-1)
        return self.slot_head(feats)  # (N, W, S)

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        word_pos: torch.Tensor | None = None,
        nlu: bool = True,
        word_end: torch.Tensor | None = None,
        lm: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Run the encoder and the heads.

        Args:
            inputs: (N, T) bos + subwords, right-padded.
            lengths: (N,) number of real input positions (subwords + 1).
            word_pos: (N, W) input position of each word's first subword (needed for slots).
            nlu: compute the NLU heads (if the model has them).
            word_end: (N, W) input position of each word's last subword (``bilstm`` slot
                context; defaults to ``word_pos``).
            lm: compute the LM head (off where only the NLU heads are read).
        Returns:
            ``lm`` (N, T, V) (with ``lm``); with NLU heads also ``intent`` (N, C) and ``slot``
            (N, W, S).
        """
        h = self.encode(inputs)  # (N, T, D)
        out = {"lm": self.lm_logits(h)} if lm else {}
        if nlu and self.has_nlu_heads:
            s = self.sentence_vector(h, lengths)  # (N, 2D)
            out["intent"] = self.intent_head(s)
            if word_pos is not None:
                out["slot"] = self.slot_logits(h, s, word_pos, word_end)  # (N, W, S)
        return out


@dataclass
class LoadedLM:
    """A ``train-lm`` checkpoint as objects (:func:`load_lm`)."""

    model: MultitaskLM
    tokenizer: LMTokenizer
    intents: list[str]  # empty for an LM without NLU heads
    slot_tags: list[str]
    checkpoint: dict[str, Any]  # the raw checkpoint (training state, config, env)


def load_lm(path: str | Path, checkpoint: dict[str, Any] | None = None) -> LoadedLM:
    """Build the :class:`MultitaskLM` of a ``train-lm`` checkpoint with its tokenizer and labels.

    The one reader of LM checkpoints: ``train-lm`` (``--init-from``, resume) and
    :class:`lm.scorer.LMScorer` use it. The model is on the CPU, in training mode.

    Args:
        path: the checkpoint (``best.pt``, ``epoch-N.pt``); loaded with ``weights_only=True``.
        checkpoint: its already loaded content (then ``path`` only names it in errors).

    Raises:
        CheckpointError: naming ``path`` if it is missing, corrupt, not an LM checkpoint (an
            RNN-T one, an arbitrary ``torch.save``'d dict) or its weights do not fit its config.
    """
    state = load_checkpoint(path) if checkpoint is None else checkpoint
    try:
        model_cfg = ModelConfig.from_dict(state["config"]["model"])
        model_cfg.validate()
        tok = LMTokenizer.from_tensor(state["tokenizer"], source=f"{path} (tokenizer)")
        labels = state.get("labels") or {}
        if not isinstance(labels, dict) or not isinstance(state["model"], dict):
            raise TypeError("'labels' or 'model' is not a dict")
        intents, slot_tags = list(labels.get("intents", [])), list(labels.get("slot_tags", []))
    except KeyError as e:
        raise CheckpointError(f"{path}: not an LM checkpoint (no {e} entry)") from None
    except (TypeError, InputError) as e:
        raise CheckpointError(f"{path}: not an LM checkpoint ({e})") from None
    model = MultitaskLM(model_cfg, tok.vocab_size, len(intents), len(slot_tags))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: checkpoint does not match its own config: {e}") from None
    return LoadedLM(model, tok, intents, slot_tags, state)


def init_from_lm(
    path: Path, model_cfg: ModelConfig, intents: list[str], slot_tags: list[str], seed: int
) -> tuple[MultitaskLM, LMTokenizer]:
    """A new model initialised from the LM of checkpoint ``path`` (``train-lm --init-from``).

    The architecture and tokenizer are the checkpoint's, dropout and slot context
    ``model_cfg``'s; NLU heads for ``intents`` / ``slot_tags`` (empty: none) are new unless the
    checkpoint's fit. Every tensor of the checkpoint whose name and shape fit is copied; the
    others are drawn after ``torch.manual_seed(seed)``.

    Raises:
        CheckpointError: naming ``path`` (see :func:`load_lm`), or if its label inventories
            differ from ``intents`` / ``slot_tags``.
    """
    init = load_lm(path)
    if init.model.cfg != model_cfg:
        logging.info("Architecture taken from %s: %s", path, init.model.cfg)
    model_cfg = dataclasses.replace(
        init.model.cfg, dropout=model_cfg.dropout, slot_context=model_cfg.slot_context
    )
    if intents and init.intents and (init.intents, init.slot_tags) != (intents, slot_tags):
        raise CheckpointError(f"{path}: label inventories differ from --intents/--slot-tags")
    torch.manual_seed(seed)
    model = MultitaskLM(model_cfg, init.tokenizer.vocab_size, len(intents), len(slot_tags))
    own = model.state_dict()
    loaded, skipped = [], []
    for k, v in init.checkpoint["model"].items():
        if k in own and isinstance(v, torch.Tensor) and own[k].shape == v.shape:
            own[k] = v
            loaded.append(k)
        else:
            skipped.append(k)
    model.load_state_dict(own)
    logging.info(
        "Initialised %d tensors from %s (new: %s; ignored: %s)",
        len(loaded),
        path,
        [k for k in own if k not in loaded] or "none",
        skipped or "none",
    )
    return model, init.tokenizer
