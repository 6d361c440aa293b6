"""Train the fusion LM of ``decode-asr --fusion-lm``: an LSTM LM over the ASR's BPE ids.

The text (``--text``, one normalised sentence per line, e.g. the recipe's leak-free
``data/lm/pretrain.txt`` and ``data/lm/finetune.txt``) is encoded with the ASR's BPE model
(``--bpe-model``); every ``--valid-every``-th line is held out for the validation perplexity
that picks ``best.pt``. Dev and test transcripts must not be in ``--text`` (the recipe's LM
text excludes them, stage 4). The Adam LR stays at ``--lr`` until an epoch ends without a better
validation loss (``--lr-schedule plateau``, then times ``--lr-decay``), or falls on a half cosine
to ``--lr x --lr-final`` over the planned steps (``--lr-schedule cosine``: ``--num-epochs``
epochs, or ``--max-steps`` if fewer; a resumed run goes on at its step's LR, so raising
``--num-epochs`` of a finished cosine run re-plans the rest of the curve).

The loop, resume and re-run rules are those of ``common/trainer.py`` (shared with train-asr and
train-lm): re-running the same command resumes from the last ``epoch-N.pt`` (a partial epoch
continues at its batch); a finished run is a no-op; ``--num-epochs`` / ``--max-steps`` /
``--max-minutes`` bound the training. Bad input (a missing or empty text file, an empty line,
a line the BPE model encodes to nothing, a non-sentencepiece ``--bpe-model``, a foreign
checkpoint in the exp dir) stops before training with one line ``train-token-lm: error: ...``
naming the file and line, exit status 2.

Usage:
    train-token-lm --text data/lm/pretrain.txt data/lm/finetune.txt \\
        --bpe-model data/lang_bpe_128/bpe.model --exp-dir exp/asr/token_lm --max-minutes 10

OUTPUTS (in --exp-dir):
    epoch-N.pt, best.pt   checkpoints (model, optimizer, RNG, train state; config and the BPE
                          pieces the LM was trained with, checked by decode-asr)
    config.json, cmd.sh   the resolved configuration; the command
    log/train.csv         train loss every --log-interval steps; log/valid.csv: validation
                          loss and perplexity per evaluation; log/log-train.txt: the log
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from asr.data import Tokenizer
from asr.fusion import SOS_ID, TokenLM, TokenLMConfig, token_lm_checkpoint
from common.bf16_check import require_cpu_bf16
from common.budget import TrainBudget
from common.checkpoint import CheckpointError
from common.cli import TrainCli
from common.io import InputError, open_text
from common.trainer import (
    LoopOptions,
    Resume,
    StepOutput,
    Trainer,
    config_dict,
    find_resume,
    training_session,
)

LR_SCHEDULES = ("plateau", "cosine")


def cosine_lr(step: int, total: int, lr: float, final: float) -> float:
    """The LR of (0-based) ``step`` of ``total`` on a half-cosine from ``lr`` to ``lr * final``
    (``final`` from step ``total - 1`` on)."""
    t = min(step / max(total - 1, 1), 1.0)
    return lr * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t)))


@dataclass
class TokenLMTrainConfig(TrainBudget):
    text: list[Path] = field(
        default_factory=lambda: [Path("data/lm/pretrain.txt"), Path("data/lm/finetune.txt")],
        metadata={"help": "training text files, one normalised sentence per line"},
    )
    bpe_model: Path = field(
        default=Path("data/lang_bpe_128/bpe.model"),
        metadata={"help": "the ASR's sentencepiece model (the LM's token ids are the ASR's)"},
    )
    exp_dir: Path = field(default=Path("exp/asr/token_lm"), metadata={"help": "output dir"})
    valid_every: int = field(
        default=100, metadata={"help": "every N-th line is held out for validation"}
    )
    batch_tokens: int = field(default=8000, metadata={"help": "tokens per batch (padding incl.)"})
    max_len: int = field(
        default=100, metadata={"help": "longest sentence in tokens (longer ones are cut)"}
    )
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    lr_schedule: str = field(
        default="plateau",
        metadata={
            "help": "plateau: --lr until an epoch end without a better valid loss, then times "
            "--lr-decay; cosine: from --lr down to --lr x --lr-final over the planned steps "
            "(--num-epochs epochs, or --max-steps if fewer), one value per step"
        },
    )
    lr_decay: float = field(
        default=0.5, metadata={"help": "LR factor at each epoch end without a better valid loss"}
    )
    lr_final: float = field(
        default=0.1, metadata={"help": "cosine schedule: the last step's LR as a share of --lr"}
    )
    num_epochs: int = field(default=5, metadata={"help": "epochs"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    log_interval: int = field(default=50, metadata={"help": "steps between train log rows"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    num_threads: int = field(default=1, metadata={"help": "torch intra-op threads"})
    cpu_bf16: bool = field(
        default=False, metadata={"help": "bf16 autocast of the training steps (CPU)"}
    )

    def validate(self) -> None:
        """Raises :class:`InputError` naming the offending option."""
        if not self.text:
            raise InputError("--text: no training text")
        if self.valid_every < 2 or self.batch_tokens < 1 or self.max_len < 1:
            raise InputError("--valid-every must be >= 2, --batch-tokens and --max-len >= 1")
        if not self.lr > 0 or not 0 < self.lr_decay <= 1:
            raise InputError("--lr must be > 0 and --lr-decay in (0, 1]")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"--lr-schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if not 0 <= self.lr_final <= 1:
            raise InputError("--lr-final must be in [0, 1]")
        if self.num_epochs < 1:
            raise InputError("--num-epochs must be >= 1")
        self.validate_budget()


def read_token_text(
    paths: list[Path], tok: Tokenizer, max_len: int, valid_every: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(train, valid) token sequences of every line of ``paths``; line i (counted over all the
    files) goes to valid when ``i % valid_every == valid_every - 1``.

    Raises:
        InputError: naming file and line: a missing or empty file, an empty line, a line
            that encodes to no token.
    """
    train: list[list[int]] = []
    valid: list[list[int]] = []
    i = 0
    for path in paths:
        n0 = i
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                words = line.split()
                if not words:
                    raise InputError(f"{path}:{lineno}: empty line")
                ids = tok.encode(" ".join(words))
                if not ids:
                    raise InputError(f"{path}:{lineno}: encodes to no BPE token: {line.strip()!r}")
                (valid if i % valid_every == valid_every - 1 else train).append(ids[:max_len])
                i += 1
        if i == n0:
            raise InputError(f"{path}: no sentence")
    return train, valid


def make_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped by length (sorted, stable), each batch at most ``batch_tokens`` tokens
    with padding (a longer sentence gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) + 1) * (lengths[i] + 1) > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def collate(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (N, T+1) ``<sos> ids``, targets (N, T+1) ``ids <eos>``; padding -100)."""
    t = max(len(s) for s in seqs) + 1
    inputs = torch.zeros(len(seqs), t, dtype=torch.long)
    targets = torch.full((len(seqs), t), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        x = torch.tensor(s, dtype=torch.long)
        inputs[i, 0] = SOS_ID
        inputs[i, 1 : len(s) + 1] = x
        targets[i, : len(s)] = x
        targets[i, len(s)] = SOS_ID  # <eos> = <sos/eos>
    return inputs, targets


def token_loss(model: TokenLM, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per target token (fp32 under autocast)."""
    logits = model(inputs).float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)


class TokenLMTrainer(Trainer):
    """``train-token-lm``'s parts of the loop: length-bucketed batches in a shuffled order per
    epoch, cross-entropy, validation perplexity, LR decay on a validation plateau or a cosine
    decay over the planned steps."""

    train_log_fields = ("loss",)
    dev_log_fields = ("valid_loss", "valid_ppl")

    def __init__(
        self,
        model: TokenLM,
        pieces: list[str],
        cfg: TokenLMTrainConfig,
        data: tuple[list[list[int]], list[list[int]]],
        command: list[str] | None,
    ) -> None:
        self.cfg, self.pieces = cfg, pieces
        self.train_seqs, self.valid_seqs = data
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        opts = LoopOptions(
            num_epochs=cfg.num_epochs,
            grad_clip=cfg.grad_clip,
            log_interval=cfg.log_interval,
            **cfg.budget_options(),
        )
        super().__init__(
            model,
            optimizer,
            opts,
            cfg.exp_dir,
            config=cfg,
            config_extra={"model": config_dict(model.cfg)},
            command=command,
        )
        self.lr_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.lr_decay, patience=0
        )
        self.batches = make_batches([len(s) for s in self.train_seqs], cfg.batch_tokens)
        self.valid_batches = make_batches([len(s) for s in self.valid_seqs], cfg.batch_tokens)
        planned = cfg.num_epochs * len(self.batches)
        self.planned_steps = min(planned, cfg.max_steps) if cfg.max_steps else planned

    def prepare(self, resumed: bool) -> None:
        self._set_lr()  # a resumed cosine run goes on at its step's LR

    def after_step(self) -> None:
        self._set_lr()

    def _set_lr(self) -> None:
        """Cosine schedule: the LR of the next step (``state.step`` steps are done)."""
        cfg = self.cfg
        if cfg.lr_schedule != "cosine":
            return
        lr = cosine_lr(self.state.step, self.planned_steps, cfg.lr, cfg.lr_final)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_batches(self, epoch: int, skip: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = list(self.batches)
        random.Random(self.cfg.seed + epoch).shuffle(order)
        for b in order[skip:]:
            yield collate([self.train_seqs[i] for i in b])

    def batches_per_epoch(self, epoch: int) -> int:
        return len(self.batches)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.cpu_bf16):
            loss = token_loss(self.model, *batch)
        return StepOutput(loss, {"loss": (float(loss.detach()), 1.0)})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float | None]:
        self.model.eval()
        total, count = 0.0, 0
        for b in self.valid_batches:
            inputs, targets = collate([self.valid_seqs[i] for i in b])
            n = int((targets != -100).sum())
            total += float(token_loss(self.model, inputs, targets)) * n
            count += n
        self.model.train()
        loss = total / max(count, 1)
        if not self.state.partial and self.cfg.lr_schedule == "plateau":
            self.lr_sched.step(loss)
        return {"valid_loss": round(loss, 5), "valid_ppl": round(math.exp(loss), 3)}

    def select_value(self, metrics: dict[str, float | None]) -> float | None:
        return metrics["valid_loss"]

    def state_extra(self) -> dict[str, Any]:
        return {
            **token_lm_checkpoint(self.model, self.pieces),
            "lr_scheduler": self.lr_sched.state_dict(),
        }

    def load_state_extra(self, ckpt: dict[str, Any]) -> None:
        self.lr_sched.load_state_dict(ckpt["lr_scheduler"])


def _model(model_cfg: TokenLMConfig, cfg: TokenLMTrainConfig, resume: Resume | None, pieces):
    """A new model, or the architecture of the checkpoint resumed (it wins over the options)."""
    if resume is None:
        torch.manual_seed(cfg.seed)
        return TokenLM(model_cfg, len(pieces))
    info = resume.ckpt.get("token_lm")
    if not isinstance(info, dict):
        raise CheckpointError(
            f"{resume.path}: not a train-token-lm checkpoint; use a new --exp-dir"
        )
    if info.get("pieces") != pieces:
        raise CheckpointError(f"{resume.path}: trained with another BPE model than {cfg.bpe_model}")
    return TokenLM(TokenLMConfig(**info["config"]), len(pieces))


def run(model_cfg: TokenLMConfig, cfg: TokenLMTrainConfig, command: list[str] | None = None):
    """Train (or resume); returns the training state."""
    model_cfg.validate()
    cfg.validate()
    if cfg.cpu_bf16:
        require_cpu_bf16()
    with training_session(cfg.exp_dir):
        torch.set_num_threads(cfg.num_threads)
        tok = Tokenizer(cfg.bpe_model)
        pieces = tok.sp_pieces()
        data = read_token_text(cfg.text, tok, cfg.max_len, cfg.valid_every)
        n_tok = sum(len(s) + 1 for s in data[0])
        logging.info(
            "%d train sentences (%d tokens incl. eos), %d valid sentences, BPE %s (%d pieces)",
            len(data[0]),
            n_tok,
            len(data[1]),
            cfg.bpe_model,
            len(pieces),
        )
        resume = find_resume(cfg.exp_dir)
        model = _model(model_cfg, cfg, resume, pieces)
        logging.info(
            "TokenLM %s: %.2fM parameters",
            model.cfg,
            sum(p.numel() for p in model.parameters()) / 1e6,
        )
        trainer = TokenLMTrainer(model, pieces, cfg, data, command)
        trainer.fit(resume)
        logging.info("Best: epoch %d, %s", trainer.state.best_epoch, trainer.state.best_metrics)
        return trainer.state


CLI = TrainCli(
    prog="train-token-lm",
    doc=__doc__,
    train_cls=TokenLMTrainConfig,
    model_cls=TokenLMConfig,
    presets=("default",),
    preset_configs=lambda name, args: (TokenLMConfig(), TokenLMTrainConfig()),
)


def main(argv: list[str] | None = None) -> None:
    CLI.main(run, argv)


if __name__ == "__main__":
    main()
