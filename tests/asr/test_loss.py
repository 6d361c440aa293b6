"""The vectorised RNN-T loss equals torchaudio's (values and gradients) on random inputs."""

from __future__ import annotations

import pytest
import torch

from asr.loss import rnnt_loss_torch, rnnt_loss_torchaudio


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_loss_matches_torchaudio(seed):
    g = torch.Generator().manual_seed(seed)
    n, t, u, v = 5, 17, 9, 23
    logits = torch.randn(n, t, u + 1, v, generator=g) * 3
    targets = torch.randint(1, v, (n, u), generator=g, dtype=torch.int64)
    # full lengths, short utterances, T < U, an empty label sequence, a single frame
    logit_lens = torch.tensor([17, 12, 4, 17, 1])
    target_lens = torch.tensor([9, 5, 8, 0, 2])
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ref = rnnt_loss_torchaudio(a, targets, logit_lens, target_lens)
    out = rnnt_loss_torch(b, targets, logit_lens, target_lens)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    w = torch.rand(n, generator=g)  # a non-uniform upstream gradient
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
