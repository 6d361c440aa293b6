"""Typed configurations of the rescoring LM (model and training) with size presets.

Presets: ``tiny`` (tests, seconds on CPU) and ``default`` (fits the budget of the SNIPS recipe
on 2 CPU cores: pre-training on ~1.7M words < 15 min, each SNIPS fine-tuning < 5 min).
Any field can be overridden on the ``train-lm`` command line (``--embed-dim 128`` ...).

Usage:
    from lm.config import get_preset
    model_cfg, train_cfg = get_preset("default", mode="pretrain")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from common.budget import TrainBudget
from common.io import InputError

ARCHS = ("lstm", "transformer")
SLOT_CONTEXTS = ("sentence", "bilstm")
MODES = ("pretrain", "multitask", "finetune-multitask", "finetune-lm")
SELECT_METRICS = ("auto", "lm_loss", "total_loss", "intent_acc", "slot_f1")


@dataclass
class ModelConfig:
    """Architecture of :class:`lm.model.MultitaskLM` (the vocabulary size comes from the
    sentencepiece model, the label counts from the label inventories)."""

    arch: str = field(default="lstm", metadata={"help": f"encoder: one of {ARCHS}"})
    embed_dim: int = field(default=256, metadata={"help": "token embedding size (= tied output)"})
    hidden_dim: int = field(default=512, metadata={"help": "LSTM hidden size / Transformer FF"})
    num_layers: int = field(default=1, metadata={"help": "encoder layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads (transformer only)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout on embeddings and states"})
    max_len: int = field(
        default=128, metadata={"help": "max subword tokens per sentence (transformer positions)"}
    )
    slot_context: str = field(
        default="bilstm",
        metadata={
            "help": "slot-head input per word: 'sentence' = [state at the word's first subword ; "
            "sentence vector]; 'bilstm' = a 1-layer BiLSTM (NLU head only) over [state at the "
            "word's first subword ; state at its last subword], then [.. ; sentence vector]"
        },
    )

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """From a checkpoint's ``config["model"]``; checkpoints older than ``slot_context`` used
        the ``sentence`` slot head."""
        if not isinstance(d, dict):
            raise TypeError(f"model config is a {type(d).__name__}, not a dict")
        d = dict(d)
        d.setdefault("slot_context", "sentence")
        return cls(**d)

    def validate(self) -> None:
        """Raises :class:`InputError` (a ``ValueError``) naming the offending option."""
        if self.arch not in ARCHS:
            raise InputError(f"--arch must be one of {ARCHS}, got {self.arch!r}")
        if self.slot_context not in SLOT_CONTEXTS:
            raise InputError(f"--slot-context must be one of {SLOT_CONTEXTS}")
        if self.arch == "transformer" and self.embed_dim % self.num_heads:
            raise InputError("--embed-dim must be divisible by --num-heads")
        if min(self.embed_dim, self.hidden_dim, self.num_layers, self.max_len) < 1:
            raise InputError("--embed-dim, --hidden-dim, --num-layers and --max-len must be >= 1")


@dataclass
class TrainConfig(TrainBudget):
    """Everything ``train-lm`` needs besides the architecture."""

    mode: str = field(
        default="pretrain",
        metadata={
            "help": "pretrain: LM objective on --train-text; multitask: LM+intent+slot from "
            "scratch on --nlu-train; finetune-multitask: same, initialised from --init-from; "
            "finetune-lm: LM objective on --train-text initialised from --init-from"
        },
    )
    exp_dir: Path = field(default=Path("exp/lm/pretrain"), metadata={"help": "output folder"})
    init_from: Path | None = field(
        default=None, metadata={"help": "checkpoint to initialise from (the pre-trained LM)"}
    )
    # data
    train_text: Path = field(
        default=Path("data/lm/pretrain.txt"),
        metadata={"help": "plain text, one sentence per line (pretrain / finetune-lm)"},
    )
    nlu_train: Path = field(
        default=Path("data/manifests/snips_nlu_train.jsonl.gz"),
        metadata={"help": "NLU-labelled SupervisionSet (multitask modes)"},
    )
    nlu_extra: Path | None = field(
        default=None,
        metadata={
            "help": "extra NLU-labelled SupervisionSet, e.g. pseudo-label-nlu's --out: its "
            "utterances are trained on together with --nlu-train's (never used as dev; "
            "multitask modes only)"
        },
    )
    nlu_dev: Path = field(
        default=Path("data/manifests/snips_nlu_dev.jsonl.gz"),
        metadata={"help": "dev SupervisionSet: perplexity, intent accuracy, slot F1"},
    )
    intents: Path = field(
        default=Path("data/manifests/snips_intents.txt"), metadata={"help": "intent inventory"}
    )
    slot_tags: Path = field(
        default=Path("data/manifests/snips_slot_tags.txt"),
        metadata={"help": "BIO slot-tag inventory"},
    )
    bpe_model: Path = field(
        default=Path("data/lang_lm_unigram_1000/lm_bpe.model"),
        metadata={
            "help": "the LM's own sentencepiece model; trained on --bpe-train-text if absent"
        },
    )
    bpe_train_text: Path = field(
        default=Path("data/lm/pretrain.txt"), metadata={"help": "text for the sentencepiece model"}
    )
    bpe_vocab_size: int = field(default=1000, metadata={"help": "sentencepiece vocabulary size"})
    # objective and task-weight scheduling
    scheduler: str = field(
        default="fixed", metadata={"help": "task-weight scheduler: fixed, linear or rwm"}
    )
    task_weights: tuple[float, ...] = field(
        default=(1.0, 1.0, 1.0),
        metadata={"help": "w_lm w_intent w_slot (fixed: as given; linear: the end point)"},
    )
    ramp_steps: int = field(
        default=2000, metadata={"help": "linear: steps over which NLU weights go 0 -> target"}
    )
    rwm_eps: float = field(default=0.2, metadata={"help": "rwm: epsilon of (1-eps)^loss"})
    rwm_interval: int = field(default=100, metadata={"help": "rwm: update every N steps"})
    rwm_scale: float = field(
        default=0.05,
        metadata={"help": "rwm: relative dev-loss change mapped to loss 0 (+scale) / 1 (-scale)"},
    )
    rwm_use: str = field(
        default="scale",
        metadata={"help": "rwm: 'scale' the losses by 3*p or 'sample' one task per step from p"},
    )
    rwm_floor: float = field(
        default=0.05, metadata={"help": "rwm: each task keeps at least this probability"}
    )
    rwm_dev_sentences: int = field(
        default=500, metadata={"help": "rwm: dev sentences used for the per-interval signal"}
    )
    # optimisation
    epochs: int = field(default=10, metadata={"help": "max epochs"})
    batch_tokens: int = field(default=3000, metadata={"help": "max subword tokens per batch"})
    max_batch_sentences: int = field(default=256, metadata={"help": "max sentences per batch"})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clipping"})
    lr_decay: float = field(
        default=0.5, metadata={"help": "LR factor when the dev selection metric does not improve"}
    )
    patience: int = field(
        default=3, metadata={"help": "early stopping: dev evaluations in a row without improvement"}
    )
    select_metric: str = field(
        default="auto",
        metadata={
            "help": f"best-checkpoint metric, one of {SELECT_METRICS}; auto = lm_loss for LM "
            "modes, total_loss (unweighted sum of dev losses) for multitask modes"
        },
    )
    seed: int = field(default=42, metadata={"help": "random seed (data order, init, rwm)"})
    cpu_bf16: bool = field(
        default=False,
        metadata={
            "help": "bf16 autocast of the training steps (LSTM/attention and linear layers in "
            "bf16, the losses in fp32): faster on a CPU with avx512_bf16, slower on one "
            "without (lm/README.md, 'bf16 on the CPU')"
        },
    )
    num_threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads; 1 is much faster on a shared machine (measured 9.7k vs "
            "1.2k tok/s when another job holds the cores: OpenMP threads wait for each other), "
            "2 may help only on an idle machine"
        },
    )
    log_interval: int = field(default=200, metadata={"help": "log every N steps"})

    @property
    def is_multitask(self) -> bool:
        return self.mode in ("multitask", "finetune-multitask")

    def validate(self) -> None:
        """Raises :class:`InputError` (a ``ValueError``) naming the offending option."""
        if self.mode not in MODES:
            raise InputError(f"--mode must be one of {MODES}, got {self.mode!r}")
        if self.select_metric not in SELECT_METRICS:
            raise InputError(f"--select-metric must be one of {SELECT_METRICS}")
        if not self.is_multitask and self.select_metric in ("intent_acc", "slot_f1"):
            raise InputError(
                f"--select-metric {self.select_metric}: --mode {self.mode} has no NLU heads"
            )
        if self.mode == "finetune-multitask" and self.init_from is None:
            raise InputError("--mode finetune-multitask needs --init-from (the pre-trained LM)")
        if self.nlu_extra is not None and not self.is_multitask:
            raise InputError(
                f"--nlu-extra: --mode {self.mode} trains the LM objective only; extra NLU "
                "data needs --mode multitask or finetune-multitask"
            )
        if self.mode == "pretrain" and self.init_from is not None:
            raise InputError("--mode pretrain trains from scratch: drop --init-from")
        if len(self.task_weights) != 3 or any(w < 0 for w in self.task_weights):
            raise InputError("--task-weights needs three non-negative numbers: lm intent slot")
        from lm.schedulers import SCHEDULERS

        if self.scheduler not in SCHEDULERS:
            raise InputError(
                f"--scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}"
            )
        if not self.is_multitask and self.scheduler != "fixed":
            raise InputError(
                f"--mode {self.mode} trains the LM objective only: use --scheduler fixed"
            )
        if self.rwm_use not in ("scale", "sample"):
            raise InputError("--rwm-use must be 'scale' or 'sample'")
        if not 0.0 < self.rwm_eps < 1.0:
            raise InputError("--rwm-eps must be in (0, 1)")
        if not 0.0 <= self.rwm_floor < 1.0 / 3:
            raise InputError("--rwm-floor must be in [0, 1/3)")
        if self.ramp_steps < 1 or self.rwm_interval < 1 or self.rwm_scale <= 0:
            raise InputError("--ramp-steps and --rwm-interval must be >= 1, --rwm-scale > 0")
        if self.epochs < 1 or self.batch_tokens < 1 or self.max_batch_sentences < 1:
            raise InputError("--epochs, --batch-tokens and --max-batch-sentences must be >= 1")
        if self.log_interval < 1 or self.patience < 1:
            raise InputError("--log-interval and --patience must be >= 1")
        self.validate_budget()


def _preset_tables() -> dict[str, tuple[ModelConfig, dict[str, dict]]]:
    """Per preset: the model config and per-mode training overrides."""
    default_model = ModelConfig()
    tiny_model = ModelConfig(embed_dim=32, hidden_dim=48, num_layers=1, num_heads=2, dropout=0.1)
    default_modes = {
        # ~2M subword tokens per epoch, ~2.5 min/epoch on 2 cores
        "pretrain": dict(epochs=4, max_minutes=13.0, patience=2, batch_tokens=4000),
        # SNIPS train: ~13k sentences, ~0.17M subword tokens, ~150 batches of 1200 tokens
        "multitask": dict(
            epochs=15, max_minutes=4.5, batch_tokens=1200, rwm_interval=50, ramp_steps=600
        ),
        # LM-only and multitask fine-tuning at matched epochs (3; the multitask runs reached 3
        # in the old 4.5-min budget, ~90 s per epoch with the RWM dev passes, LM-only ~25 s);
        # the time budget is a safety net only
        "finetune-multitask": dict(
            epochs=3, max_minutes=6.0, batch_tokens=1200, lr=1e-3, rwm_interval=50, ramp_steps=450
        ),
        "finetune-lm": dict(
            epochs=3, max_minutes=6.0, batch_tokens=1200, lr=1e-3, task_weights=(1.0, 0.0, 0.0)
        ),
    }
    default_modes["pretrain"]["task_weights"] = (1.0, 0.0, 0.0)
    tiny_common = dict(
        bpe_vocab_size=60,
        batch_tokens=200,
        log_interval=5,
        rwm_interval=2,
        ramp_steps=4,
        rwm_dev_sentences=8,
        patience=5,
        bpe_model=Path("data/lang_lm_unigram_60/lm_bpe.model"),
    )
    tiny_modes = {
        "pretrain": dict(tiny_common, epochs=2, task_weights=(1.0, 0.0, 0.0)),
        "multitask": dict(tiny_common, epochs=3),
        "finetune-multitask": dict(tiny_common, epochs=3),
        "finetune-lm": dict(tiny_common, epochs=2, task_weights=(1.0, 0.0, 0.0)),
    }
    return {"default": (default_model, default_modes), "tiny": (tiny_model, tiny_modes)}


PRESETS = ("tiny", "default")


def get_preset(name: str, mode: str = "pretrain") -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs of preset ``name`` for ``mode``."""
    tables = _preset_tables()
    if name not in tables:
        raise InputError(f"unknown preset {name!r}; choose from {PRESETS}")
    if mode not in MODES:
        raise InputError(f"--mode must be one of {MODES}, got {mode!r}")
    model, modes = tables[name]
    train = dataclasses.replace(TrainConfig(mode=mode), **modes[mode])
    return dataclasses.replace(model), train


def preset_help() -> str:
    """The values each preset changes (the defaults printed per option are the class defaults)."""
    lines = ["", "PRESETS (option defaults below are overridden per --preset and --mode):"]
    for name in PRESETS:
        for mode in MODES:
            diff = {}
            for cfg in get_preset(name, mode):
                base = type(cfg)()
                diff.update(
                    {
                        f.name: getattr(cfg, f.name)
                        for f in dataclasses.fields(cfg)
                        if f.name != "mode" and getattr(cfg, f.name) != getattr(base, f.name)
                    }
                )
            items = ", ".join(f"{k}={v}" for k, v in diff.items()) or "class defaults"
            lines.append(f"    {name} / {mode}: {items}")
    return "\n".join(lines) + "\n"
