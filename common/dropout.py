"""Dropout with a cheaper keep mask on the CPU.

On the CPU, ``torch.nn.Dropout`` draws one random number per element (``aten::bernoulli_``):
in training steps of the default RNN-T (1 thread, multi-engine SNIPS batches, torch 2.11) that
was 15-24% of the CPU time, the largest single operator (``torch.profiler``; asr/README.md,
"Measured: dropout"; ``bench/dropout_speed.py``). :class:`FastDropout` draws one 64-bit random integer per four
elements and keeps an element when its 16-bit lane is at or above a threshold:

- each element is dropped independently with probability ``q / 65536``, ``q = round(p * 65536)``
  (``p`` quantised to 1/65536: 0.1 becomes 0.1000061);
- kept elements are scaled by ``65536 / (65536 - q)``, so the expectation is unchanged;
- in eval mode, with ``p`` = 0, ``inplace=True`` or on another device than the CPU (CUDA has a
  fused kernel) it is ``nn.Dropout`` exactly.

The random numbers come from torch's default generator, so ``torch.manual_seed`` makes it
reproducible. It holds no parameters: checkpoints of models with ``nn.Dropout`` load unchanged.

Usage:
    drop = FastDropout(0.1)
    n = use_fast_dropout(model)   # replace every nn.Dropout module of ``model``; returns the count
"""

from __future__ import annotations

import torch
from torch import nn

LANES = 4  # 16-bit lanes per 64-bit draw
LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """Bool tensor of ``shape``: True with probability ``1 - round(p * 65536) / 65536``,
    independently per element (16-bit lanes of 64-bit draws from the default generator)."""
    n = 1
    for s in shape:
        n *= s
    q = round(p * LEVELS)
    if q <= 0 or q >= LEVELS:
        return torch.full(tuple(shape), q <= 0, dtype=torch.bool)
    draws = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + LANES - 1) // LANES,), dtype=torch.int64)
    lanes = draws.view(torch.int16)[:n].view(shape)
    return lanes >= q - (LEVELS >> 1)


class _MaskedScale(torch.autograd.Function):
    """``x * mask`` with the float mask (0 or the keep scale) saved for the backward pass: one
    pass forward, one backward (``torch.where`` on a bool mask measured slower: zeros + where)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with :func:`keep_mask` on CPU tensors in training (see the module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.inplace or x.device.type != "cpu":
            return super().forward(x)
        q = round(self.p * LEVELS)
        if q >= LEVELS:
            return x * 0.0
        mask = keep_mask(x.shape, self.p).to(x.dtype).mul_(LEVELS / (LEVELS - q))
        return _MaskedScale.apply(x, mask)


def use_fast_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout`` (exactly that class) inside ``module`` by a
    :class:`FastDropout` of the same ``p`` and ``inplace``; returns how many were replaced.
    Dropout built into other modules (``nn.MultiheadAttention``'s attention dropout,
    ``nn.LSTM``'s between-layer dropout) is not a module and stays torch's."""
    count = 0
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, FastDropout(child.p, child.inplace))
            count += 1
        else:
            count += use_fast_dropout(child)
    return count
