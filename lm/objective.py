"""The multitask objective of the rescoring LM and its dev metrics.

``compute_loss`` is the training loss ``w_lm*L_lm + w_intent*L_intent + w_slot*L_slot`` of a
batch; ``dev_metrics`` the per-epoch dev evaluation (subword and word perplexity, intent
accuracy, slot F1 with seqeval's conlleval-style spans); ``dev_task_losses`` the per-task dev
losses the RWM task-weight scheduler learns from.

Usage:
    loss, stats = compute_loss(model, batch, weights=(1.0, 0.5, 0.5))
    metrics = dev_metrics(model, dev_examples, labels, batch_tokens=3000, num_words=n)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lm.data import IGNORE, Batch, Example, Labels, iterate_batches
from lm.model import MultitaskLM


def compute_loss(
    model: MultitaskLM, batch: Batch, weights: tuple[float, float, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted multitask loss of one batch.

    Returns:
        (loss, stats): ``loss`` = sum_k w_k * L_k with each L_k a mean (per subword token, per
        sentence, per word); ``stats`` holds the unweighted per-task means.
    """
    need_nlu = model.has_nlu_heads and (weights[1] > 0 or weights[2] > 0)
    out = model(batch.inputs, batch.lengths, batch.word_pos, nlu=need_nlu, word_end=batch.word_end)
    v = model.vocab_size
    # .float(): fp32 losses under bf16 autocast (--cpu-bf16); a no-op in fp32
    lm = F.cross_entropy(
        out["lm"].float().reshape(-1, v), batch.targets.reshape(-1), ignore_index=IGNORE
    )
    loss = weights[0] * lm
    stats = {"lm": lm.item()}
    if need_nlu:
        if (batch.intents != IGNORE).any():
            li = F.cross_entropy(out["intent"].float(), batch.intents, ignore_index=IGNORE)
            loss = loss + weights[1] * li
            stats["intent"] = li.item()
        if (batch.slots != IGNORE).any():
            ls = F.cross_entropy(
                out["slot"].float().reshape(-1, model.num_slot_tags),
                batch.slots.reshape(-1),
                ignore_index=IGNORE,
            )
            loss = loss + weights[2] * ls
            stats["slot"] = ls.item()
    return loss, stats


@torch.no_grad()
def dev_metrics(
    model: MultitaskLM,
    examples: list[Example],
    labels: Labels | None,
    batch_tokens: int,
    num_words: int,
    slot_f1: bool = True,
) -> dict[str, float | None]:
    """Dev metrics: mean per-task losses, subword / word perplexity, intent accuracy, slot F1.

    Word perplexity = exp(total NLL / (words + sentences)) (each sentence's eos counted as a
    word), comparable across subword inventories.
    """
    from seqeval.metrics import f1_score

    was_training = model.training
    model.eval()
    nll = tokens = 0.0
    int_loss = int_correct = int_n = 0.0
    slot_loss = slot_n = 0.0
    refs: list[list[str]] = []
    hyps: list[list[str]] = []
    nlu = model.has_nlu_heads and labels is not None
    for batch in iterate_batches(examples, batch_tokens):
        out = model(batch.inputs, batch.lengths, batch.word_pos, nlu=nlu, word_end=batch.word_end)
        nll += F.cross_entropy(
            out["lm"].reshape(-1, model.vocab_size),
            batch.targets.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        ).item()
        tokens += (batch.targets != IGNORE).sum().item()
        if not nlu:
            continue
        m = batch.intents != IGNORE
        if m.any():
            int_loss += F.cross_entropy(out["intent"][m], batch.intents[m], reduction="sum").item()
            int_correct += (out["intent"][m].argmax(-1) == batch.intents[m]).sum().item()
            int_n += m.sum().item()
        sm = batch.slots != IGNORE
        if sm.any():
            slot_loss += F.cross_entropy(out["slot"][sm], batch.slots[sm], reduction="sum").item()
            slot_n += sm.sum().item()
            pred = out["slot"].argmax(-1)
            for i in range(batch.slots.size(0) if slot_f1 else 0):
                k = int(sm[i].sum())
                if k:
                    refs.append([labels.slot_tags[j] for j in batch.slots[i, :k].tolist()])
                    hyps.append([labels.slot_tags[j] for j in pred[i, :k].tolist()])
    if was_training:
        model.train()
    metrics: dict[str, float | None] = {
        "lm_loss": nll / max(tokens, 1),
        "ppl": math.exp(min(nll / max(tokens, 1), 50)),
        "word_ppl": math.exp(min(nll / max(num_words + len(examples), 1), 50)),
        "intent_loss": int_loss / int_n if int_n else None,
        "intent_acc": int_correct / int_n if int_n else None,
        "slot_loss": slot_loss / slot_n if slot_n else None,
        "slot_f1": float(f1_score(refs, hyps)) if refs else None,
    }
    metrics["total_loss"] = (
        metrics["lm_loss"] + (metrics["intent_loss"] or 0.0) + (metrics["slot_loss"] or 0.0)
    )
    return metrics


def dev_task_losses(
    model: MultitaskLM, examples: list[Example], batch_tokens: int
) -> dict[str, float]:
    """Per-task mean dev losses on a fixed subset: the signal of the RWM scheduler."""
    m = dev_metrics(model, examples, Labels([], []), batch_tokens, num_words=0, slot_f1=False)
    return {
        "lm": float(m["lm_loss"]),
        "intent": float(m["intent_loss"] if m["intent_loss"] is not None else math.inf),
        "slot": float(m["slot_loss"] if m["slot_loss"] is not None else math.inf),
    }
