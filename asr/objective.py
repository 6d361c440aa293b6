"""The training objective of the RNN-T and its dev evaluation.

``compute_loss`` is RNN-T (+ ``ctc_weight`` x CTC) per target token with bad utterances masked
out; ``TransducerForward`` runs :meth:`asr.model.Transducer.forward_all` as ``forward`` (what
DDP wraps); ``validate`` is the dev loss, ``greedy_wer`` the dev greedy WER.

Usage:
    loss, stats = compute_loss(TransducerForward(model), batch, train_cfg, device)
    dev_loss, wer = validate(model, dev_dl, train_cfg, device), greedy_wer(model, dl, tok, device)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asr.config import TrainConfig
from asr.data import Tokenizer
from asr.loss import RNNT_LOSSES
from asr.model import Transducer
from asr.search import GreedySearch
from common.wer import compute_wer


def compute_loss(
    model: torch.nn.Module, batch: dict, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, dict[str, float]]:
    """RNN-T (+ ``ctc_weight`` x CTC) loss of a batch, normalised per target token.

    Utterances with an empty label sequence, fewer encoder frames than labels, or a non-finite
    loss are masked out (counted in ``stats["bad_utts"]``).

    Returns:
        (loss, stats) where stats holds summed rnnt/ctc losses, token and utterance counts.
    """
    feats = batch["feats"].to(device)  # (N, T, C) fbank, or (N, S) waveform (SSL front-end)
    feat_lens = batch["feat_lens"].to(device)  # (N,)
    targets = batch["targets"].to(device)  # (N, U)
    target_lens = batch["target_lens"].to(device)  # (N,)
    assert feats.dim() in (2, 3) and targets.dim() == 2, (feats.shape, targets.shape)
    if targets.shape[1] == 0:  # every label sequence empty: keep shapes valid
        targets = targets.new_zeros(targets.shape[0], 1)
    logits, enc_lens, ctc_lp = model(feats, feat_lens, targets, target_lens)
    rnnt = RNNT_LOSSES[cfg.loss_impl](logits.float(), targets, enc_lens, target_lens)  # (N,)
    if cfg.ctc_weight > 0:
        ctc = F.ctc_loss(
            ctc_lp.float().transpose(0, 1),
            targets,
            enc_lens,
            target_lens,
            blank=0,
            reduction="none",
            zero_infinity=True,
        )
    else:
        ctc = torch.zeros_like(rnnt)
    valid = (target_lens > 0) & (enc_lens >= target_lens) & rnnt.isfinite() & ctc.isfinite()
    per_utt = torch.where(valid, rnnt + cfg.ctc_weight * ctc, torch.zeros_like(rnnt))
    num_tokens = int(target_lens[valid].sum())
    loss = per_utt.sum() / max(num_tokens, 1)
    stats = {
        "rnnt": float(torch.where(valid, rnnt.detach(), 0.0).sum()),
        "ctc": float(torch.where(valid, ctc.detach(), 0.0).sum()),
        "tokens": float(num_tokens),
        "utts": float(valid.sum()),
        "bad_utts": float((~valid).sum()),
    }
    return loss, stats


class TransducerForward(torch.nn.Module):
    """Wraps ``Transducer.forward_all`` as ``forward`` so DDP hooks see the whole graph."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats, feat_lens, targets, target_lens):
        return self.model.forward_all(feats, feat_lens, targets, target_lens)


@torch.no_grad()
def validate(model: Transducer, dl, cfg: TrainConfig, device) -> float:
    """Dev RNN-T+CTC loss per token."""
    was_training = model.training
    model.eval()
    fwd = TransducerForward(model)
    tot, tok = 0.0, 0.0
    for batch in dl:
        _, st = compute_loss(fwd, batch, cfg, device)
        tot += st["rnnt"] + cfg.ctc_weight * st["ctc"]
        tok += st["tokens"]
    model.train(was_training)
    return tot / max(tok, 1.0)


@torch.no_grad()
def greedy_wer(model: Transducer, dl, tok: Tokenizer, device) -> float:
    was_training = model.training
    model.eval()
    search = GreedySearch(max_sym_per_frame=3)  # the loss allows several symbols per frame
    results = []
    for batch in dl:
        hyps = search(model, batch["feats"].to(device), batch["feat_lens"].to(device))
        for uid, ref, nb in zip(batch["ids"], batch["texts"], hyps, strict=True):
            results.append((uid, ref.split(), tok.decode(list(nb[0].tokens)).split()))
    model.train(was_training)
    return compute_wer(results).wer
