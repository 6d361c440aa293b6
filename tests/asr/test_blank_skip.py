"""CTC blank skipping before the RNN-T search (``asr.search.drop_blank_frames``,
``ModifiedBeamSearch(blank_skip_threshold=...)``, ``decode-asr --blank-skip-threshold``)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from asr.config import get_model_preset
from asr.decode import DecodeConfig
from asr.model import build_model
from asr.search import ModifiedBeamSearch, drop_blank_frames
from common.io import InputError


@pytest.fixture(scope="module")
def model_and_enc():
    torch.manual_seed(0)
    cfg = dataclasses.replace(get_model_preset("tiny"), vocab_size=40)
    model = build_model(cfg).eval()
    feats = torch.randn(3, 64, 80)
    lens = torch.tensor([64, 40, 24])
    with torch.no_grad():
        enc, enc_lens = model.transcribe(feats, lens)
    return model, enc, enc_lens


class _Head(torch.nn.Module):
    """A CTC head whose blank log-posterior is the first encoder dimension (the others 0)."""

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*enc.shape[:2], 5)
        out[..., 0] = enc[..., 0]
        return out


class _Model:
    blank_id = 0
    ctc_head = _Head()


def test_frames_are_dropped_by_blank_posterior_and_packed_in_order():
    # blank log-posterior (after log_softmax over 5 classes) decides; value in dim 1 = frame no.
    blank_sure, unsure = 20.0, -20.0
    enc = torch.zeros(3, 5, 2)
    enc[..., 1] = torch.arange(5.0)
    enc[0, :, 0] = torch.tensor([unsure, blank_sure, unsure, blank_sure, unsure])
    enc[1, :, 0] = torch.tensor([blank_sure, unsure, unsure, unsure, unsure])  # frames 3, 4 pad
    enc[2, :, 0] = blank_sure  # every frame blank
    lens = torch.tensor([5, 3, 4])
    packed, new_lens = drop_blank_frames(_Model(), enc, lens, 0.9)
    assert new_lens.tolist() == [3, 2, 0]
    assert new_lens.dtype == lens.dtype
    assert packed.shape == (3, 3, 2)
    assert packed[0, :3, 1].tolist() == [0.0, 2.0, 4.0]
    assert packed[1, :2, 1].tolist() == [1.0, 2.0]  # padding frames 3, 4 never kept


def test_threshold_one_keeps_every_frame(model_and_enc):
    model, enc, enc_lens = model_and_enc
    packed, lens = drop_blank_frames(model, enc, enc_lens, 1.0)
    assert lens.tolist() == enc_lens.tolist()
    for i, n in enumerate(enc_lens.tolist()):
        assert torch.equal(packed[i, :n], enc[i, :n])


def test_search_with_blank_skip_is_the_search_on_the_kept_frames(model_and_enc):
    model, enc, enc_lens = model_and_enc
    # the random model's CTC head: a threshold at the median blank posterior drops about half
    with torch.no_grad():
        blank = model.ctc_head(enc).log_softmax(-1)[..., 0]
    threshold = math.exp(float(blank[0, :64].median()))
    packed, lens = drop_blank_frames(model, enc, enc_lens, threshold)
    assert 0 < int(lens.sum()) < int(enc_lens.sum())
    opts = dict(beam=4, max_sym_per_frame=2, length_bonus=0.5)
    skipping = ModifiedBeamSearch(**opts, blank_skip_threshold=threshold)
    got = skipping.search_encoded(model, enc, enc_lens)
    want = ModifiedBeamSearch(**opts).search_encoded(model, packed, lens)
    key = lambda out: [[(h.tokens, h.score) for h in nb] for nb in out]  # noqa: E731
    assert key(got) == key(want)
    # an utterance with no frame left gets the empty hypothesis
    none_kept = ModifiedBeamSearch(**opts, blank_skip_threshold=1e-30)
    assert [[h.tokens for h in nb] for nb in none_kept.search_encoded(model, enc, enc_lens)] == [
        [()]
    ] * 3


def test_threshold_one_is_bit_identical(model_and_enc):
    model, enc, enc_lens = model_and_enc
    key = lambda out: [[(h.tokens, h.score) for h in nb] for nb in out]  # noqa: E731
    plain = ModifiedBeamSearch(beam=4, max_sym_per_frame=2).search_encoded(model, enc, enc_lens)
    one = ModifiedBeamSearch(beam=4, max_sym_per_frame=2, blank_skip_threshold=1.0)
    assert key(one.search_encoded(model, enc, enc_lens)) == key(plain)


def test_model_without_ctc_head_and_bad_thresholds_are_errors(model_and_enc):
    _, enc, enc_lens = model_and_enc

    class NoHead:
        blank_id = 0

    with pytest.raises(ValueError, match="needs a model with a CTC head"):
        drop_blank_frames(NoHead(), enc, enc_lens, 0.9)
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(ValueError, match="blank_skip_threshold must be in"):
            ModifiedBeamSearch(blank_skip_threshold=bad)
        with pytest.raises(InputError, match="--blank-skip-threshold must be in"):
            DecodeConfig(blank_skip_threshold=bad).validate()
    with pytest.raises(InputError, match="--blank-skip-threshold: search method 'greedy'"):
        DecodeConfig(method="greedy", blank_skip_threshold=0.9).validate()
    assert DecodeConfig(beam=20, blank_skip_threshold=0.99).suffix.endswith("_bs0.99")
    assert "_bs" not in DecodeConfig(beam=20).suffix
