"""Self-supervised pre-trained front-ends of the RNN-T: wav2vec 2.0 / HuBERT on 16 kHz waveforms.

``--frontend wav2vec2_base`` or ``hubert_base`` replaces the fbank front-end (global CMVN and
Conv2d subsampling) by torchaudio's ``Wav2Vec2Model`` of that architecture (the BASE models:
7-layer CNN feature encoder, 12 transformer layers of 768 dimensions, 20 ms frames), whose
output frames are stacked in groups of ``subsampling_factor / 2`` (so the Conformer runs at the
frame rate of the fbank model, 40 ms for the factor 4) and projected linearly to the Conformer's
``encoder_dim``. ``--frontend-layers N`` keeps only the first N transformer layers.

Frozen (``--frontend-freeze true``, the default) the SSL model is a fixed feature extractor:
no gradient, always in eval mode (no dropout), its weights never change; only the projection and
what follows train. ``--frontend-freeze false`` fine-tunes it with the RNN-T.

Weights: a torchaudio-format state dict (``--frontend-checkpoint``), e.g. saved on a machine
with internet access by
``torch.save(torchaudio.pipelines.WAV2VEC2_BASE.get_model().state_dict(), "w2v2_base.pt")``
(or ``HUBERT_BASE``; the ``.pth`` file torchaudio caches under ``~/.cache/torch/hub`` works as
it is; legacy ``weight_g``/``weight_v`` weight-norm keys are converted). The two architectures
are identical in shape, so a wav2vec 2.0 file also loads into ``hubert_base``: name the
front-end the weights were trained as. Weights of layers beyond ``--frontend-layers`` and of an
ASR head (``aux``, in the fine-tuned bundles) are left out, with a log line; any other missing,
unexpected or mis-shaped weight is an error naming the file. Without a checkpoint the SSL model
is randomly initialised and a WARNING says it is untrained.

References: Baevski et al., "wav2vec 2.0", NeurIPS 2020; Hsu et al., "HuBERT", IEEE/ACM TASLP
2021.

Usage:
    frontend = SSLFrontend("wav2vec2_base", out_dim=144, stack=2, num_layers=0, freeze=True)
    frontend.load_pretrained("w2v2_base.pt")
    x, lens = frontend(wav, wav_lens)        # (N, S), (N,) -> (N, T', 144), (N,)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn
from torchaudio.models import Wav2Vec2Model, wav2vec2_model

from common.io import CheckpointError

SAMPLE_RATE = 16000
#: (kernel, stride) of the CNN feature encoder of the BASE models (torchaudio's default)
CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))

_BASE = dict(
    extractor_mode="group_norm",
    extractor_conv_layer_config=None,
    extractor_conv_bias=False,
    encoder_embed_dim=768,
    encoder_pos_conv_kernel=128,
    encoder_pos_conv_groups=16,
    encoder_num_heads=12,
    encoder_ff_interm_features=3072,
    encoder_layer_norm_first=False,
    aux_num_out=None,
)
#: ``torchaudio.models.wav2vec2_model`` arguments of each front-end, as
#: ``torchaudio.models.wav2vec2_base()`` / ``hubert_base()`` set them (the number of layers is
#: ``--frontend-layers``); they differ only in their dropouts.
SSL_ARCHITECTURES: dict[str, dict] = {
    "wav2vec2_base": dict(
        _BASE,
        encoder_projection_dropout=0.1,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_dropout=0.1,
        encoder_dropout=0.1,
        encoder_layer_drop=0.1,
    ),
    "hubert_base": dict(
        _BASE,
        encoder_projection_dropout=0.1,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_drop=0.05,
    ),
}
BASE_LAYERS = 12
FRONTENDS = ("fbank", *SSL_ARCHITECTURES)

_LAYER_KEY = re.compile(r"^encoder\.transformer\.layers\.(\d+)\.")
_LEGACY_WEIGHT_NORM = {
    ".weight_g": ".parametrizations.weight.original0",
    ".weight_v": ".parametrizations.weight.original1",
}


def ssl_frames(num_samples: torch.Tensor | int, stack: int) -> torch.Tensor | int:
    """Output frames of the front-end for ``num_samples`` input samples (CNN, then stacking)."""
    n = num_samples
    for kernel, stride in CONV_LAYERS:
        n = (n - kernel) // stride + 1
    n = n // stack
    return n.clamp(min=0) if torch.is_tensor(n) else max(n, 0)


class SSLFrontend(nn.Module):
    """A torchaudio wav2vec 2.0 / HuBERT model, frame stacking and a linear projection.

    Args:
        name: a key of :data:`SSL_ARCHITECTURES`.
        out_dim: the projection's output size (the Conformer's ``encoder_dim``).
        stack: output frames concatenated into one (``subsampling_factor // 2``).
        num_layers: transformer layers kept (0 = all 12).
        freeze: keep the SSL model's weights fixed (no gradient, eval mode).
    """

    def __init__(self, name: str, out_dim: int, stack: int, num_layers: int, freeze: bool) -> None:
        super().__init__()
        self.name, self.stack, self.freeze = name, stack, freeze
        self.num_layers = num_layers or BASE_LAYERS
        arch = SSL_ARCHITECTURES[name]
        self.ssl: Wav2Vec2Model = wav2vec2_model(**arch, encoder_num_layers=self.num_layers)
        self.proj = nn.Linear(arch["encoder_embed_dim"] * stack, out_dim)
        if freeze:
            self.ssl.requires_grad_(False)

    def train(self, mode: bool = True) -> SSLFrontend:
        super().train(mode)
        if self.freeze:  # a fixed feature extractor: no dropout or layer drop, ever
            self.ssl.eval()
        return self

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S) 16 kHz samples, (N,) -> (N, T', out_dim), (N,)."""
        assert wav.dim() == 2, wav.shape  # (N, S)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            x, lengths = self.ssl(wav, lengths)  # (N, T, 768), 20 ms frames
        n, t, c = x.shape
        t2 = t // self.stack
        x = x[:, : t2 * self.stack].reshape(n, t2, c * self.stack)  # (N, T', 768 * stack)
        return self.proj(x), torch.div(lengths, self.stack, rounding_mode="floor").clamp(max=t2)

    def load_pretrained(self, path: str | Path) -> None:
        """Load the SSL model's weights from a torchaudio-format state dict file (see the
        module docstring for what is converted or left out).

        Raises:
            CheckpointError: naming ``path`` when it is missing, not a state dict, or holds
                weights of another model (missing, unexpected or mis-shaped keys).
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: SSL front-end checkpoint not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a corrupt or foreign file
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {first})") from None
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise CheckpointError(
                f"{path}: not a state dict (a flat mapping of parameter names to tensors, as "
                "torchaudio's Wav2Vec2Model.state_dict() gives)"
            )
        own = self.ssl.state_dict()
        kept, dropped = {}, []
        for key, value in state.items():
            for old, new in _LEGACY_WEIGHT_NORM.items():
                if key.startswith("encoder.transformer.pos_conv_embed.") and key.endswith(old):
                    key = key[: -len(old)] + new
            m = _LAYER_KEY.match(key)
            if key.startswith("aux.") or (m and int(m.group(1)) >= self.num_layers):
                dropped.append(key)
            else:
                kept[key] = value
        missing = sorted(set(own) - set(kept))
        unexpected = sorted(set(kept) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: not a {self.name} state dict in torchaudio's format ("
                f"{len(missing)} missing weights, e.g. {missing[:2]}; {len(unexpected)} "
                f"unexpected, e.g. {unexpected[:2]})"
            )
        for key, value in kept.items():
            if value.shape != own[key].shape:
                raise CheckpointError(
                    f"{path}: weight {key} has shape {tuple(value.shape)}, the {self.name} "
                    f"front-end's is {tuple(own[key].shape)} (another model size?)"
                )
        self.ssl.load_state_dict(kept)
        logging.info(
            "%s front-end: loaded %d weights from %s (%d left out: layers >= %d, ASR head)",
            self.name,
            len(kept),
            path,
            len(dropped),
            self.num_layers,
        )
