"""Conformer RNN-T from torchaudio parts: Conv2d subsampling + ``torchaudio.models.Conformer``
transcriber, torchaudio's LSTM predictor and joiner, plus a CTC head on the encoder.

References: Graves, "Sequence Transduction with Recurrent Neural Networks", 2012 (RNN-T);
Gulati et al., "Conformer", Interspeech 2020; Graves et al., ICML 2006 (CTC).

Usage:
    from asr.model import build_model
    model = build_model(model_cfg)           # asr.config.ModelConfig
    enc, enc_lens = model.transcribe(feats, feat_lens)   # (N, T', J), (N,)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchaudio.models import RNNT, Conformer
from torchaudio.models.conformer import ConformerLayer
from torchaudio.models.rnnt import _Joiner, _Predictor

from asr.config import ModelConfig
from asr.frontend import SSLFrontend
from common.dropout import use_fast_dropout


class GlobalCMVN(nn.Module):
    """Global mean/variance normalisation with statistics computed on the training set.

    Stored as buffers so every checkpoint carries the statistics it was trained with.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std.clamp(min=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C)
        return (x - self.mean) * self.inv_std


class Conv2dSubsampling(nn.Module):
    """Stride-2 Conv2d+ReLU blocks (log2(factor) of them) then a linear projection.

    Output length follows ``T -> (T - 1) // 2`` per block (kernel 3, no padding), as in
    ESPnet/icefall's ``Conv2dSubsampling``.
    """

    def __init__(self, in_dim: int, out_dim: int, factor: int, channels: int) -> None:
        super().__init__()
        self.num_blocks = int(round(math.log2(factor)))
        layers: list[nn.Module] = []
        c_in, f = 1, in_dim
        for _ in range(self.num_blocks):
            layers += [nn.Conv2d(c_in, channels, kernel_size=3, stride=2), nn.ReLU()]
            c_in, f = channels, (f - 1) // 2
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * f, out_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_blocks):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor")
        return lengths.clamp(min=0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.dim() == 3, x.shape  # (N, T, C)
        x = self.conv(x.unsqueeze(1))  # (N, ch, T', F')
        n, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(n, t, c * f))  # (N, T', D)
        return x, self.output_lengths(lengths).clamp(max=t)


def _padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(N,) lengths -> (N, T) bool, True on padded frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class MaskedConformer(Conformer):
    """``torchaudio.models.Conformer`` whose convolution modules do not see padded frames.

    torchaudio masks the padded frames in self-attention only; its depthwise convolution reads
    whatever the padded positions hold, so the output for an utterance depended on the length
    (and content) of the other utterances in its batch. As icefall's ``ConvolutionModule``
    does, the padded frames are set to zero after the GLU, right before the depthwise
    convolution (the only module that mixes frames besides attention). Parameters and
    state-dict keys are torchaudio's; ``mask_padding=False`` is torchaudio's computation
    exactly (checkpoints trained before this option).
    """

    def __init__(
        self,
        *args,
        mask_padding: bool = True,
        half_rate: tuple[int, int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.mask_padding = mask_padding
        self.half_rate = half_rate
        if half_rate is not None:
            start, end = half_rate
            assert mask_padding and 0 <= start < end <= len(self.conformer_layers), half_rate

    def forward(
        self, input: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T, D), (N,) -> (N, T, D), (N,); padded output frames are not meaningful.

        With ``half_rate=(start, end)`` layers ``start .. end-1`` run on frames mean-pooled in
        pairs (the Time-UNet of Kim et al., "Squeezeformer", NeurIPS 2022): the frames are
        repeated back to the full rate after layer ``end-1`` and the input of layer ``start``
        is added as a skip connection. No parameters are added; the output rate is unchanged.
        """
        if not self.mask_padding:
            return super().forward(input, lengths)
        pad = _padding_mask(lengths, input.size(1))  # (N, T)
        x = input.transpose(0, 1)  # (T, N, D), as torchaudio's layers take it
        start, end = self.half_rate or (-1, -1)
        skip, full_pad = x, pad
        for i, layer in enumerate(self.conformer_layers):
            if i == start:
                skip, full_pad = x, pad
                x, pad = _halve_rate(x, pad)
            elif i == end:
                x, pad = _double_rate(x, skip.size(0)) + skip, full_pad
            x = _layer_forward(layer, x, pad)
        if end == len(self.conformer_layers):
            x = _double_rate(x, skip.size(0)) + skip
        return x.transpose(0, 1), lengths


def _halve_rate(x: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, N, D) frames, (N, T) padding -> the mean of each pair of valid frames (ceil(T/2), N,
    D) and its padding: a pair is valid when its first frame is (lengths -> ceil(L / 2))."""
    t = x.size(0)
    valid = (~pad).transpose(0, 1).unsqueeze(-1).to(x.dtype)  # (T, N, 1)
    if t % 2:
        x = torch.cat([x, x.new_zeros(1, *x.shape[1:])])
        valid = torch.cat([valid, valid.new_zeros(1, *valid.shape[1:])])
    total = (x * valid).unflatten(0, (-1, 2)).sum(1)
    count = valid.unflatten(0, (-1, 2)).sum(1).clamp(min=1.0)
    return total / count, pad[:, ::2]


def _double_rate(x: torch.Tensor, length: int) -> torch.Tensor:
    """(T2, N, D) -> (length, N, D): each frame repeated twice, cut to ``length``."""
    return x.repeat_interleave(2, dim=0)[:length]


def _layer_forward(layer: ConformerLayer, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """``ConformerLayer.forward`` (torchaudio 2.x) with the convolution module masked."""
    x = layer.ffn1(x) * 0.5 + x
    if layer.convolution_first:
        x = x + _masked_conv(layer.conv_module, x, pad)
    residual = x
    y = layer.self_attn_layer_norm(x)
    y, _ = layer.self_attn(query=y, key=y, value=y, key_padding_mask=pad, need_weights=False)
    x = layer.self_attn_dropout(y) + residual
    if not layer.convolution_first:
        x = x + _masked_conv(layer.conv_module, x, pad)
    x = layer.ffn2(x) * 0.5 + x
    return layer.final_layer_norm(x)


def _masked_conv(module: nn.Module, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """torchaudio's ``_ConvolutionModule`` on (T, N, D) with padded frames zeroed before the
    depthwise convolution; returns (T, N, D) (without the residual)."""
    seq = module.sequential  # pointwise conv, GLU, depthwise conv, norm, SiLU, pointwise, dropout
    y = module.layer_norm(x).permute(1, 2, 0)  # (N, D, T)
    y = seq[1](seq[0](y))
    y = y.masked_fill(pad.unsqueeze(1), 0.0)
    for m in seq[2:]:
        y = m(y)
    return y.permute(2, 0, 1)


class ConformerTranscriber(nn.Module):
    """Transcriber for :class:`torchaudio.models.RNNT`: CMVN -> Conv2d subsampling ->
    Conformer -> linear to the joiner dimension; with an SSL front-end
    (:class:`asr.frontend.SSLFrontend`, ``cfg.frontend``) waveform -> SSL model -> projection
    -> Conformer -> linear."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ssl_frontend: SSLFrontend | None = None
        if cfg.waveform_input:
            self.ssl_frontend = SSLFrontend(
                cfg.frontend,
                cfg.encoder_dim,
                stack=cfg.subsampling_factor // 2,  # SSL frames are 20 ms, fbank ones 10 ms
                num_layers=cfg.frontend_layers,
                freeze=cfg.frontend_freeze,
            )
        else:
            self.cmvn = GlobalCMVN(cfg.feature_dim)
            self.subsampling = Conv2dSubsampling(
                cfg.feature_dim, cfg.encoder_dim, cfg.subsampling_factor, cfg.subsampling_channels
            )
        self.dropout = nn.Dropout(cfg.dropout)
        self.conformer = MaskedConformer(
            input_dim=cfg.encoder_dim,
            num_heads=cfg.num_heads,
            ffn_dim=cfg.ffn_dim,
            num_layers=cfg.num_encoder_layers,
            depthwise_conv_kernel_size=cfg.conv_kernel_size,
            dropout=cfg.dropout,
            mask_padding=cfg.mask_padding,
            half_rate=cfg.half_rate_span,
        )
        self.output = nn.Linear(cfg.encoder_dim, cfg.joiner_dim)

    def forward(
        self, input: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T, C) fbank or (N, S) waveform (SSL front-end), (N,) -> (N, T', J), (N,)."""
        if self.ssl_frontend is not None:
            x, lengths = self.ssl_frontend(input, lengths)
        else:
            x, lengths = self.subsampling(self.cmvn(input), lengths)
        lengths = lengths.clamp(min=1)  # the Conformer's key-padding mask needs >= 1 frame
        x, lengths = self.conformer(self.dropout(x), lengths)
        return self.output(x), lengths

    def infer(self, input, lengths, states):  # pragma: no cover - streaming is not supported
        raise NotImplementedError("the Conformer transcriber is not streaming")


class Transducer(RNNT):
    """A torchaudio :class:`~torchaudio.models.RNNT` with a CTC head on the transcriber output
    (Watanabe et al., "Hybrid CTC/Attention", 2017 for the auxiliary-CTC idea)."""

    def __init__(self, cfg: ModelConfig) -> None:
        cfg.validate()
        transcriber = ConformerTranscriber(cfg)
        predictor = _Predictor(
            num_symbols=cfg.vocab_size,
            output_dim=cfg.joiner_dim,
            symbol_embedding_dim=cfg.embed_dim,
            num_lstm_layers=cfg.predictor_layers,
            lstm_hidden_dim=cfg.predictor_hidden,
            lstm_layer_norm=True,
            lstm_layer_norm_epsilon=1e-5,
            lstm_dropout=cfg.predictor_dropout,
        )
        joiner = _Joiner(cfg.joiner_dim, cfg.vocab_size, activation="tanh")
        super().__init__(transcriber, predictor, joiner)
        self.cfg = cfg
        self.ctc_head = nn.Linear(cfg.joiner_dim, cfg.vocab_size)
        use_fast_dropout(self)  # CPU training: a cheaper mask (common/dropout.py), same model

    @property
    def blank_id(self) -> int:
        return 0

    def set_cmvn(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        assert not self.cfg.waveform_input, "an SSL front-end has no CMVN"
        self.transcriber.cmvn.set_stats(mean, std)

    @property
    def ssl_frontend(self) -> SSLFrontend | None:
        return self.transcriber.ssl_frontend

    def forward_all(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        targets: torch.Tensor,
        target_lens: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joiner logits and CTC log-probs in one pass.

        Args:
            feats: (N, T, C) fbank, or (N, S) waveform for an SSL front-end; feat_lens: (N,).
            targets: (N, U) token ids (padding arbitrary); target_lens: (N,).

        Returns:
            logits (N, T', U+1, V), enc_lens (N,), ctc_log_probs (N, T', V).
        """
        assert feats.dim() == (2 if self.cfg.waveform_input else 3), feats.shape
        assert targets.dim() == 2, targets.shape
        enc, enc_lens = self.transcribe(feats, feat_lens)
        blank = torch.full_like(targets[:, :1], self.blank_id)
        pred_in = torch.cat([blank, targets], dim=1)  # (N, U+1)
        pred, pred_lens, _ = self.predict(pred_in, target_lens + 1, None)
        logits, _, _ = self.join(enc, enc_lens, pred, pred_lens)
        ctc = self.ctc_head(enc).log_softmax(-1)
        return logits, enc_lens, ctc


def build_model(cfg: ModelConfig) -> Transducer:
    return Transducer(cfg)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
