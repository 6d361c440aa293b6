"""The Conformer transcriber: padded frames must not reach an utterance's output."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchaudio.models import Conformer

from asr.config import ModelConfig, get_model_preset
from asr.model import MaskedConformer, build_model
from common.io import CheckpointError


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
