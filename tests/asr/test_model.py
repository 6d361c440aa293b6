"""The Conformer transcriber: padded frames must not reach an utterance's output; the
half-rate (Time-UNet) layers keep the frame rate and batch independence."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchaudio.models import Conformer

from asr.config import ModelConfig, get_model_preset
from asr.model import MaskedConformer, _double_rate, _halve_rate, build_model
from common.io import CheckpointError, InputError


def _conformers(mask: bool) -> tuple[MaskedConformer, Conformer]:
    torch.manual_seed(0)
    kw = dict(input_dim=16, num_heads=2, ffn_dim=32, num_layers=2, depthwise_conv_kernel_size=7)
    ours = MaskedConformer(**kw, mask_padding=mask).eval()
    ref = Conformer(**kw).eval()
    ref.load_state_dict(ours.state_dict())  # same parameters, same state-dict keys
    return ours, ref


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    lengths = torch.tensor([20, 13, 5])
    x = torch.randn(3, 20, 16) * 3.0  # the padding holds large values, as after subsampling
    return x, lengths


def test_unmasked_is_torchaudio_exactly():
    ours, ref = _conformers(mask=False)
    x, lengths = _batch()
    with torch.no_grad():
        assert torch.equal(ours(x, lengths)[0], ref(x, lengths)[0])


@pytest.mark.parametrize("mask", [True, False])
def test_batched_output_equals_each_utterance_alone(mask):
    """With the mask the valid frames do not depend on the batch; torchaudio's Conformer (no
    mask) leaks the padding through its depthwise convolution, which is what this guards."""
    ours, _ = _conformers(mask=mask)
    x, lengths = _batch()
    with torch.no_grad():
        batched = ours(x, lengths)[0]
        diffs = []
        for i, n in enumerate(lengths.tolist()):
            alone = ours(x[i : i + 1, :n], lengths[i : i + 1])[0][0]
            diffs.append((batched[i, :n] - alone).abs().max().item())
    if mask:
        assert max(diffs) < 1e-5, diffs
    else:
        assert max(diffs[1:]) > 1e-2, diffs  # the padded utterances change


def test_transducer_encoder_is_batch_independent():
    cfg = dataclasses.replace(get_model_preset("tiny"), vocab_size=40)
    assert cfg.mask_padding
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    feats = torch.randn(3, 101, cfg.feature_dim)
    feat_lens = torch.tensor([101, 64, 33])
    with torch.no_grad():
        enc, enc_lens = model.transcribe(feats, feat_lens)
        for i in range(3):
            n = int(feat_lens[i])
            alone, alone_lens = model.transcribe(feats[i : i + 1, :n], feat_lens[i : i + 1])
            assert int(alone_lens[0]) == int(enc_lens[i])
            m = int(enc_lens[i])
            torch.testing.assert_close(enc[i, :m], alone[0, :m], atol=1e-5, rtol=1e-5)


def test_old_checkpoint_config_keeps_the_unmasked_model(tmp_path):
    """A checkpoint saved before the option was trained without the mask: it loads as such."""
    saved = dataclasses.asdict(dataclasses.replace(get_model_preset("tiny"), vocab_size=40))
    del saved["mask_padding"]
    cfg = ModelConfig.from_checkpoint({"config": {"model": saved}}, tmp_path / "old.pt")
    assert cfg.mask_padding is False
    saved["mask_padding"] = True
    cfg = ModelConfig.from_checkpoint({"config": {"model": saved}}, tmp_path / "new.pt")
    assert cfg.mask_padding is True
    saved["mask_paddingg"] = True
    with pytest.raises(CheckpointError, match="new.pt"):
        ModelConfig.from_checkpoint({"config": {"model": saved}}, tmp_path / "new.pt")


@pytest.mark.parametrize("span", [(0, 2), (1, 2), (1, 3), (0, 3)])
def test_half_rate_layers_keep_the_rate_and_batch_independence(span):
    """Time-UNet layers: same output length and frame rate, utterances still independent of
    their batch (odd and even lengths: the last pair of an odd length holds one valid frame)."""
    torch.manual_seed(0)
    kw = dict(input_dim=16, num_heads=2, ffn_dim=32, num_layers=3, depthwise_conv_kernel_size=7)
    model = MaskedConformer(**kw, half_rate=span).eval()
    full = MaskedConformer(**kw).eval()
    full.load_state_dict(model.state_dict())  # no new parameters
    torch.manual_seed(1)
    lengths = torch.tensor([21, 13, 6, 1])
    x = torch.randn(4, 21, 16) * 3.0
    with torch.no_grad():
        batched, out_lens = model(x, lengths)
        assert batched.shape == x.shape and torch.equal(out_lens, lengths)
        assert not torch.allclose(batched, full(x, lengths)[0], atol=1e-3)
        for i, n in enumerate(lengths.tolist()):
            alone = model(x[i : i + 1, :n], lengths[i : i + 1])[0][0]
            torch.testing.assert_close(batched[i, :n], alone, atol=1e-5, rtol=1e-5)


def test_halve_rate_pools_valid_frames_only():
    x = torch.arange(5.0).view(5, 1, 1).repeat(1, 2, 1)  # (T=5, N=2, D=1): frames 0..4
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])  # lengths 5, 3
    half, half_pad = _halve_rate(x, pad)
    assert half[:, 0, 0].tolist() == [0.5, 2.5, 4.0]  # the odd last frame alone
    assert half[:, 1, 0].tolist()[:2] == [0.5, 2.0]  # frame 3 is padding: not averaged in
    assert half_pad.tolist() == [[False, False, False], [False, False, True]]
    assert _double_rate(half, 5)[:, 0, 0].tolist() == [0.5, 0.5, 2.5, 2.5, 4.0]


@pytest.mark.parametrize("spec", ["1", "3:3", "0:7", "a:b", "-1:2", "2:1"])
def test_half_rate_layers_option_is_checked(spec):
    cfg = dataclasses.replace(get_model_preset("tiny"), vocab_size=40, half_rate_layers=spec)
    with pytest.raises(InputError, match="--half-rate-layers"):
        cfg.validate()


def test_half_rate_layers_need_the_padding_mask():
    cfg = dataclasses.replace(
        get_model_preset("tiny"), vocab_size=40, half_rate_layers="0:1", mask_padding=False
    )
    with pytest.raises(InputError, match="--mask-padding"):
        cfg.validate()


def test_predictor_dropout_is_the_predictor_lstm_dropout():
    base = dataclasses.replace(get_model_preset("tiny"), vocab_size=40)
    assert base.predictor_dropout == 0.0
    model = build_model(dataclasses.replace(base, predictor_dropout=0.3))
    assert model.predictor.dropout.p == 0.3 and build_model(base).predictor.dropout.p == 0.0
    tokens, lengths = torch.tensor([[1, 5, 7, 2]]), torch.tensor([4])
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()
        a, b = (model.predict(tokens, lengths, None)[0] for _ in range(2))
        assert not torch.equal(a, b)  # dropout draws differ
        model.eval()
        a, b = (model.predict(tokens, lengths, None)[0] for _ in range(2))
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="--predictor-dropout"):
        dataclasses.replace(base, predictor_dropout=1.0).validate()
