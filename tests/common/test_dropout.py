"""common/dropout.py: FastDropout is dropout (rate, scale, independence, gradient), only cheaper."""

import pytest
import torch
from torch import nn

from common.dropout import LEVELS, FastDropout, keep_mask, use_fast_dropout


def test_each_lane_drops_at_the_quantised_rate():
    torch.manual_seed(0)
    p = 0.1
    keep = keep_mask((4_000_000,), p).view(-1, 4)  # the four 16-bit lanes of each draw
    rate = round(p * LEVELS) / LEVELS
    for lane_rate in (~keep).float().mean(0).tolist():
        assert abs(lane_rate - rate) < 0.002  # 1e6 samples: sd 0.0003
    # neighbouring elements are independent: P(both dropped) = rate^2
    both = (~keep[:, 0] & ~keep[:, 1]).float().mean().item()
    assert abs(both - rate * rate) < 0.001


def test_odd_sizes_and_shapes():
    for shape in [(1,), (3,), (5, 7), (2, 3, 5)]:
        assert keep_mask(shape, 0.5).shape == torch.Size(shape)
    assert keep_mask((10,), 0.0).all()
    assert not keep_mask((10,), 1.0).any()


def test_values_are_zero_or_scaled_and_mean_is_kept():
    torch.manual_seed(1)
    drop = FastDropout(0.25).train()
    y = drop(torch.ones(1000, 1000))
    scale = LEVELS / (LEVELS - round(0.25 * LEVELS))
    assert torch.unique(y).tolist() == [0.0, pytest.approx(scale)]
    assert abs(y.mean().item() - 1.0) < 0.005


def test_gradient_is_the_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = FastDropout(0.3).train()(x)
    y.backward(torch.ones_like(y))
    scale = LEVELS / (LEVELS - round(0.3 * LEVELS))
    mask = torch.where(y != 0, torch.tensor(scale), torch.tensor(0.0))  # x has no zeros
    assert torch.equal(x.grad, mask)
    assert torch.allclose(y, x * mask)


def test_eval_zero_rate_and_full_rate():
    x = torch.randn(8, 16)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))


def test_reproducible_from_the_default_generator():
    x = torch.randn(100, 100)
    drop = FastDropout(0.1).train()
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    b = drop(x)
    c = drop(x)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_inplace_falls_back_to_torch():
    torch.manual_seed(4)
    x = torch.randn(50, 50)
    ref = x.clone()
    FastDropout(0.5, inplace=True).train()(x)
    assert ((x == 0) | torch.isclose(x, 2 * ref)).all() and (x == 0).any()


def test_use_fast_dropout_replaces_modules_and_keeps_the_state_dict():
    def net():
        torch.manual_seed(5)
        return nn.Sequential(
            nn.Linear(4, 4), nn.Dropout(0.1), nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 2))
        )

    plain, fast = net(), net()
    assert use_fast_dropout(fast) == 2
    assert [type(m) for m in fast.modules()].count(nn.Dropout) == 0
    assert [m.p for m in fast.modules() if isinstance(m, FastDropout)] == [0.1, 0.2]
    assert plain.state_dict().keys() == fast.state_dict().keys()
    x = torch.randn(3, 4)
    assert torch.equal(plain.eval()(x), fast.eval()(x))


def test_the_transducer_trains_with_fast_dropout():
    from asr.config import get_model_preset
    from asr.model import build_model

    cfg = get_model_preset("tiny")
    cfg.vocab_size = 16
    model = build_model(cfg)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(isinstance(m, FastDropout) for m in drops)
