"""Typed configurations of the RNN-T (model, training, decoding) with size presets.

Presets: ``tiny`` (tests: seconds on CPU), ``default`` (the SNIPS recipe on 2 CPU cores in
< 45 min), ``large`` (a GPU; mixed precision optional). Every field can be overridden on the
command line of ``train-asr`` / ``decode-asr`` (``--encoder-dim 256`` ...).

Usage:
    from asr.config import get_model_preset, get_train_preset
    model_cfg = get_model_preset("default")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from common.budget import TrainBudget
from common.io import CheckpointError, InputError
from common.malloc import MAX_MEGABYTES
from common.speed import SPEED_RANGE

PRESETS = ("tiny", "default", "large")
#: input front-ends: fbank features, or a self-supervised model on waveforms (asr/frontend.py)
FRONTENDS = ("fbank", "wav2vec2_base", "hubert_base")
#: additive noise kinds of ``--aug-noise-types`` (asr/augment.py)
NOISE_TYPES = ("white", "pink", "babble")


@dataclass
class ModelConfig:
    """Architecture of :class:`asr.model.Transducer` (vocab size comes from the BPE model)."""

    feature_dim: int = field(
        default=80,
        metadata={"help": "input fbank dimension (must equal the cuts' feature dimension)"},
    )
    subsampling_factor: int = field(
        default=4, metadata={"help": "frame-rate reduction of the Conv2d front-end (4 or 8)"}
    )
    subsampling_channels: int = field(default=32, metadata={"help": "Conv2d front-end channels"})
    encoder_dim: int = field(default=144, metadata={"help": "Conformer model dimension"})
    num_encoder_layers: int = field(default=6, metadata={"help": "Conformer layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads"})
    ffn_dim: int = field(default=576, metadata={"help": "Conformer feed-forward dimension"})
    conv_kernel_size: int = field(default=15, metadata={"help": "depthwise conv kernel (odd)"})
    dropout: float = field(default=0.1, metadata={"help": "encoder dropout"})
    mask_padding: bool = field(
        default=True,
        metadata={
            "help": "zero the padded frames before each Conformer convolution (as icefall), so "
            "an utterance's output does not depend on its batch; false = torchaudio's "
            "Conformer as is (checkpoints saved before this option)"
        },
    )
    half_rate_layers: str = field(
        default="",
        metadata={
            "help": "Conformer layers that run at half the frame rate, 'start:end' (0-based, end "
            "excluded; Squeezeformer's Time-UNet: frames mean-pooled in pairs before layer start, "
            "repeated back after layer end-1, plus a skip connection; no new parameters, same "
            "output rate); '' = every layer at the full rate"
        },
    )
    embed_dim: int = field(default=128, metadata={"help": "predictor symbol embedding size"})
    predictor_layers: int = field(default=1, metadata={"help": "predictor LSTM layers"})
    predictor_hidden: int = field(default=256, metadata={"help": "predictor LSTM size"})
    predictor_dropout: float = field(
        default=0.0,
        metadata={
            "help": "dropout on each predictor LSTM layer's output (torchaudio lstm_dropout)"
        },
    )
    joiner_dim: int = field(default=160, metadata={"help": "joiner (and enc/pred output) dim"})
    vocab_size: int = field(
        default=0,
        metadata={
            "help": "output symbols incl. blank=0; 0 = the size of --bpe-model (any other value "
            "must equal it)"
        },
    )
    frontend: str = field(
        default="fbank",
        metadata={
            "help": "input front-end: fbank (the cuts' features, CMVN, Conv2d subsampling) or a "
            "self-supervised model on the cuts' 16 kHz audio, projected to --encoder-dim: "
            "wav2vec2_base, hubert_base (asr/frontend.py)"
        },
    )
    frontend_freeze: bool = field(
        default=True,
        metadata={"help": "SSL front-end: keep its weights fixed (false: fine-tune them)"},
    )
    frontend_layers: int = field(
        default=0,
        metadata={"help": "SSL front-end: transformer layers kept (0 = all 12)"},
    )

    @property
    def waveform_input(self) -> bool:
        """The model reads waveforms (an SSL front-end), not fbank features."""
        return self.frontend != "fbank"

    @property
    def half_rate_span(self) -> tuple[int, int] | None:
        """``--half-rate-layers`` as (start, end), or None for ''.

        Raises:
            InputError: when it is not 'start:end' with 0 <= start < end <= the layer count.
        """
        if not self.half_rate_layers:
            return None
        parts = self.half_rate_layers.split(":")
        try:
            start, end = (int(p) for p in parts) if len(parts) == 2 else (-1, -1)
        except ValueError:
            start, end = -1, -1
        if not 0 <= start < end <= self.num_encoder_layers:
            raise InputError(
                f"--half-rate-layers must be 'start:end' with 0 <= start < end <= "
                f"--num-encoder-layers ({self.num_encoder_layers}), got {self.half_rate_layers!r}"
            )
        if not self.mask_padding:
            raise InputError("--half-rate-layers needs --mask-padding true")
        return start, end

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: str | Path) -> ModelConfig:
        """The model config stored in a ``train-asr`` checkpoint (``ckpt["config"]["model"]``).

        Raises:
            CheckpointError: naming ``path`` when the checkpoint holds no RNN-T config (a
                ``train-lm`` checkpoint, an arbitrary ``torch.save``'d dict).
        """
        saved = ckpt.get("config")
        saved = saved.get("model") if isinstance(saved, dict) else None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(saved, dict) or "vocab_size" not in saved or set(saved) - names:
            found = sorted(saved) if isinstance(saved, dict) else "none"
            raise CheckpointError(
                f"{path}: not a train-asr checkpoint (its model config fields: {found})"
            )
        if "mask_padding" not in saved:  # saved before the option: trained without the mask
            saved = {**saved, "mask_padding": False}
        try:
            cfg = cls(**saved)
            cfg.validate()
            if cfg.vocab_size < 1:
                raise InputError("no vocabulary size")
        except (TypeError, InputError) as e:
            raise CheckpointError(f"{path}: unusable RNN-T model config ({e})") from None
        return cfg

    def validate(self) -> None:
        """Raises :class:`InputError` (a ``ValueError``) naming the offending option."""
        if self.subsampling_factor not in (4, 8):
            raise InputError(f"--subsampling-factor must be 4 or 8, got {self.subsampling_factor}")
        if self.encoder_dim % self.num_heads:
            raise InputError("--encoder-dim must be divisible by --num-heads")
        if self.conv_kernel_size % 2 == 0:
            raise InputError("--conv-kernel-size must be odd")
        if self.feature_dim < 1 or self.vocab_size < 0:
            raise InputError("--feature-dim must be >= 1 and --vocab-size >= 0")
        if self.frontend not in FRONTENDS:
            raise InputError(f"--frontend must be one of {FRONTENDS}, got {self.frontend!r}")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.predictor_dropout < 1.0):
            raise InputError("--dropout and --predictor-dropout must be in [0, 1)")
        if not 0 <= self.frontend_layers <= 12:
            raise InputError(f"--frontend-layers must be 0 (all) to 12, got {self.frontend_layers}")
        _ = self.half_rate_span  # raises on a malformed --half-rate-layers


@dataclass
class TrainConfig(TrainBudget):
    """Options of ``train-asr`` (data, optimisation, logging)."""

    exp_dir: Path = field(default=Path("exp/asr/conformer_rnnt"), metadata={"help": "output dir"})
    train_cuts: Path = field(
        default=Path("data/fbank/snips_cuts_train.jsonl.gz"), metadata={"help": "train CutSet"}
    )
    dev_cuts: Path = field(
        default=Path("data/fbank/snips_cuts_dev.jsonl.gz"), metadata={"help": "dev CutSet"}
    )
    bpe_model: Path = field(
        default=Path("data/lang_bpe_128/bpe.model"), metadata={"help": "sentencepiece model"}
    )
    num_epochs: int = field(default=14, metadata={"help": "epochs"})
    max_duration: float = field(default=60.0, metadata={"help": "seconds of audio per batch"})
    num_buckets: int = field(default=10, metadata={"help": "DynamicBucketingSampler buckets"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers"})
    peak_lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    warmup_steps: int = field(default=300, metadata={"help": "linear warm-up steps (Noam)"})
    lr_cooldown_steps: int = field(
        default=0,
        metadata={
            "help": "the last N steps before --max-steps multiply the Noam LR by a factor "
            "falling linearly from 1 to 0 (a warm-up / decay / cool-down schedule for a step "
            "budget; needs --max-steps; a run that --max-minutes stops earlier is not cooled "
            "down); 0 = off"
        },
    )
    weight_decay: float = field(default=1e-3, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=5.0, metadata={"help": "max gradient norm"})
    ctc_weight: float = field(default=0.5, metadata={"help": "CTC auxiliary loss weight"})
    loss_impl: str = field(
        default="torch", metadata={"help": "RNN-T loss: 'torch' (vectorised) or 'torchaudio'"}
    )
    spec_augment: bool = field(default=True, metadata={"help": "SpecAugment on train batches"})
    spec_aug_from_epoch: int = field(
        default=3, metadata={"help": "first epoch with SpecAugment (alignment first)"}
    )
    spec_time_warp_factor: int = field(
        default=0, metadata={"help": "SpecAugment time-warp factor (0 = no time warping)"}
    )
    spec_num_frame_masks: int = field(default=2, metadata={"help": "SpecAugment time masks"})
    spec_frames_mask_size: int = field(
        default=40, metadata={"help": "SpecAugment max time-mask width (frames)"}
    )
    spec_num_feature_masks: int = field(default=2, metadata={"help": "SpecAugment frequency masks"})
    spec_features_mask_size: int = field(
        default=15, metadata={"help": "SpecAugment max frequency-mask width (bins)"}
    )
    speed_perturb: bool = field(
        default=False,
        metadata={"help": "shorthand of --aug-speed 0.9 1.0 1.1 (kept for older commands)"},
    )
    # On-the-fly audio augmentation (asr/augment.py, Lhotse's transforms): when one is on, the
    # train batches are computed from the cuts' audio (fbank on the fly); dev never is.
    aug_speed: tuple[float, ...] = field(
        default=(),
        metadata={
            "help": "speed perturbation: factors, one drawn uniformly per utterance, e.g. "
            "0.9 1.0 1.1 (Lhotse cut.perturb_speed; 1.0 = unchanged; none = off)"
        },
    )
    speed_cuts: tuple[Path, ...] = field(
        default=(),
        metadata={
            "help": "stored speed-perturbed copies of the train cuts, one CutSet per factor "
            "(compute-fbank --speed-perturb: <prefix>_cuts_train_sp<f>.jsonl.gz): per utterance "
            "and epoch the original or one of its copies is drawn uniformly, and its stored "
            "features are read (--aug-speed computes them on the fly: slower); none = off"
        },
    )
    render_cuts: tuple[Path, ...] = field(
        default=(),
        metadata={
            "help": "stored features of other TTS renderings of the train utterances and their "
            "speed copies (prepare-snips --train-renders, compute-fbank: <prefix>_cuts_"
            "train_renders[_sp<f>].jsonl.gz; ids <id>_r<k>[_sp<f>]): drawn from with the "
            "original and its --speed-cuts copies, uniformly per utterance and epoch; none = off"
        },
    )
    aug_reverb_prob: float = field(
        default=0.0,
        metadata={
            "help": "probability of reverberation (cut.reverb_rir) with a synthetic room "
            "impulse response of Lhotse's FastRandomRIRGenerator (see --aug-reverb-rooms)"
        },
    )
    aug_reverb_rooms: int = field(
        default=100,
        metadata={
            "help": "synthetic room impulse responses generated once (from --seed) to draw "
            "from; 0 = a new room per utterance (~15-30 ms each on one CPU thread)"
        },
    )
    aug_noise_prob: float = field(
        default=0.0,
        metadata={"help": "probability of additive noise of one of --aug-noise-types"},
    )
    aug_noise_types: tuple[str, ...] = field(
        default=NOISE_TYPES,
        metadata={
            "help": "noise kinds, one drawn uniformly: white, pink (generated), babble "
            "(another random training utterance)"
        },
    )
    aug_snr: tuple[float, float] = field(
        default=(10.0, 20.0),
        metadata={"help": "additive noise SNR range MIN MAX in dB, drawn uniformly (cut.mix)"},
    )
    aug_volume_prob: float = field(
        default=0.0, metadata={"help": "probability of a volume change (cut.perturb_volume)"}
    )
    aug_volume_db: tuple[float, float] = field(
        default=(-6.0, 6.0),
        metadata={"help": "volume gain range MIN MAX in dB, drawn uniformly"},
    )
    aug_narrowband_prob: float = field(
        default=0.0,
        metadata={
            "help": "probability of Lhotse's Narrowband (8 kHz mu-law codec and back: "
            "band-limited to 4 kHz)"
        },
    )
    aug_from_epoch: int = field(
        default=1,
        metadata={
            "help": "first epoch in which the --aug-* audio augmentations apply (earlier "
            "epochs read the stored features, as without them; 1 = every epoch)"
        },
    )
    cmvn_cuts: int = field(default=500, metadata={"help": "train cuts for global CMVN stats"})
    valid_interval: int = field(
        default=200, metadata={"help": "steps between dev greedy-WER checks (0 = epoch end only)"}
    )
    valid_wer_cuts: int = field(default=150, metadata={"help": "dev cuts for the greedy-WER check"})
    monitor_cuts: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "NAME=CUTS: further sets whose greedy WER (their first --valid-wer-cuts) is "
            "logged at every dev check into log/monitor.csv, e.g. a held-out TTS engine for a "
            "learning curve; monitoring only: no choice (checkpoint, averaging) uses them"
        },
    )
    log_interval: int = field(default=20, metadata={"help": "steps between loss/LR log rows"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto"})
    use_amp: bool = field(default=False, metadata={"help": "bf16/fp16 autocast on CUDA"})
    cpu_bf16: bool = field(
        default=False,
        metadata={
            "help": "bf16 autocast of the training steps on the CPU (matrix products in bf16, "
            "the losses in fp32): about 1.4x faster steps on a CPU with avx512_bf16, slower "
            "on one without (asr/README.md, 'bf16 on the CPU')"
        },
    )
    num_threads: int = field(
        default=1,
        metadata={"help": "torch intra-op threads (CPU; >1 thrashes on a shared 2-core box)"},
    )
    resume: bool = field(
        default=True, metadata={"help": "continue from the last epoch-N.pt in exp-dir if any"}
    )
    malloc_mmap_threshold_mb: int = field(
        default=0,
        metadata={
            "help": "glibc malloc's mmap threshold in MiB (trim threshold twice it; at most "
            "1023): large tensors are then reused from the heap instead of mmap-ed and "
            "page-faulted anew every step (common/malloc.py); 0 = leave malloc alone"
        },
    )
    frontend_checkpoint: Path | None = field(
        default=None,
        metadata={
            "help": "SSL front-end: torchaudio state dict to start from, e.g. saved from "
            "torchaudio.pipelines.WAV2VEC2_BASE.get_model().state_dict(); unset = random "
            "initialisation (an untrained front-end; a WARNING says so)"
        },
    )

    def validate(self) -> None:
        """Raises :class:`InputError` (a ``ValueError``) naming the offending option."""
        if self.loss_impl not in ("torch", "torchaudio"):
            raise InputError(f"--loss-impl must be torch or torchaudio, got {self.loss_impl!r}")
        if self.num_epochs < 1:
            raise InputError("--num-epochs must be >= 1")
        self.validate_budget()
        if self.lr_cooldown_steps < 0:
            raise InputError(f"--lr-cooldown-steps must be >= 0, got {self.lr_cooldown_steps}")
        if self.lr_cooldown_steps > self.max_steps:
            raise InputError(
                f"--lr-cooldown-steps {self.lr_cooldown_steps} needs a --max-steps at least as "
                f"large (got --max-steps {self.max_steps})"
            )
        if self.cmvn_cuts < 1:
            raise InputError("--cmvn-cuts must be >= 1")
        if not 0 <= self.malloc_mmap_threshold_mb <= MAX_MEGABYTES:
            raise InputError(
                f"--malloc-mmap-threshold-mb must be in [0, {MAX_MEGABYTES}] (0 = off), "
                f"got {self.malloc_mmap_threshold_mb}"
            )
        if self.max_duration <= 0 or self.log_interval < 1 or self.valid_interval < 0:
            raise InputError(
                "--max-duration must be > 0, --log-interval >= 1 and --valid-interval >= 0"
            )
        self.validate_augmentation()

    def validate_augmentation(self) -> None:
        """The ``--aug-*`` options; raises :class:`InputError` naming the offending one."""
        for name in ("aug_reverb_prob", "aug_noise_prob", "aug_volume_prob", "aug_narrowband_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise InputError(f"--{name.replace('_', '-')} must be in [0, 1], got {p}")
        if self.aug_from_epoch < 1:
            raise InputError(f"--aug-from-epoch must be >= 1, got {self.aug_from_epoch}")
        if self.aug_reverb_rooms < 0:
            raise InputError(f"--aug-reverb-rooms must be >= 0, got {self.aug_reverb_rooms}")
        if self.speed_perturb and self.aug_speed:
            raise InputError("--speed-perturb is the shorthand of --aug-speed: give one of them")
        if self.speed_cuts and (self.speed_perturb or self.aug_speed):
            raise InputError(
                "--speed-cuts (stored speed-perturbed copies) and --aug-speed/--speed-perturb "
                "(on the fly) both perturb the speed: give one of them"
            )
        lo, hi = SPEED_RANGE
        for f in self.aug_speed:
            if not lo <= f <= hi:
                raise InputError(f"--aug-speed factors must be in [{lo:g}, {hi:g}], got {f:g}")
        for name in ("aug_snr", "aug_volume_db"):
            r = tuple(getattr(self, name))
            if len(r) != 2 or r[0] > r[1] or any(abs(x) > 100 for x in r):
                raise InputError(
                    f"--{name.replace('_', '-')} must be MIN MAX with MIN <= MAX, "
                    f"|values| <= 100 dB, got {' '.join(map(str, r))}"
                )
        if not self.aug_noise_types or set(self.aug_noise_types) - set(NOISE_TYPES):
            raise InputError(
                f"--aug-noise-types must be some of {' '.join(NOISE_TYPES)}, got "
                f"{' '.join(self.aug_noise_types) or 'none'}"
            )


_MODEL_PRESETS = {
    "tiny": ModelConfig(
        subsampling_factor=4,
        subsampling_channels=8,
        encoder_dim=64,
        num_encoder_layers=2,
        num_heads=2,
        ffn_dim=128,
        conv_kernel_size=7,
        dropout=0.0,
        embed_dim=32,
        predictor_hidden=64,
        joiner_dim=64,
    ),
    # Conformer layers 1-4 at half the frame rate (80 ms; session 31: dev loss after 3 epochs
    # 2.89 against 4.10 at the full rate, steps 0.80x the time, every rescored system better on
    # dev in the 75a3e4d run; asr/README.md "Half-rate Conformer layers"). Predictor dropout 0.2
    # (session 32, the same 90-min training beside the 75a3e4d run's: 1-best / 16-best oracle dev
    # WER 33.23 / 25.92 against 36.76 / 28.89; asr/README.md "Predictor dropout")
    "default": ModelConfig(half_rate_layers="1:5", predictor_dropout=0.2),
    "large": ModelConfig(
        subsampling_factor=4,
        subsampling_channels=128,
        encoder_dim=256,
        num_encoder_layers=12,
        num_heads=4,
        ffn_dim=1024,
        conv_kernel_size=31,
        embed_dim=256,
        predictor_layers=2,
        predictor_hidden=512,
        joiner_dim=320,
    ),
}

_TRAIN_PRESETS = {
    "tiny": TrainConfig(
        num_epochs=60,
        max_duration=5.0,
        num_buckets=1,
        peak_lr=5e-3,
        warmup_steps=50,
        weight_decay=0.0,
        spec_augment=False,
        valid_interval=0,
        valid_wer_cuts=20,
        log_interval=10,
        cmvn_cuts=50,
        ctc_weight=0.3,
    ),
    "default": TrainConfig(),
    "large": TrainConfig(
        num_epochs=30,
        max_duration=600.0,
        peak_lr=1.5e-3,
        warmup_steps=2000,
        bpe_model=Path("data/lang_bpe_256/bpe.model"),
        num_workers=4,
        use_amp=True,
        num_threads=0,
    ),
}


def get_model_preset(name: str) -> ModelConfig:
    if name not in _MODEL_PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {PRESETS}")
    return dataclasses.replace(_MODEL_PRESETS[name])


def get_train_preset(name: str) -> TrainConfig:
    if name not in _TRAIN_PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {PRESETS}")
    return dataclasses.replace(_TRAIN_PRESETS[name])
