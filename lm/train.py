"""Train the rescoring LM: LM pre-training, multitask (LM + intent + slot) training, fine-tuning.

Modes (``--mode``):
    pretrain            LM objective on ``--train-text`` (data/lm/pretrain.txt), from scratch
    finetune-lm         LM objective on ``--train-text`` (data/lm/finetune.txt = SNIPS train
                        text), from ``--init-from`` (the fair LM-only baseline)
    multitask           w_lm*L_lm + w_intent*L_intent + w_slot*L_slot on ``--nlu-train``
                        (plus ``--nlu-extra``, e.g. pseudo-label-nlu's output), from scratch
    finetune-multitask  the same, initialised from ``--init-from`` (seed work's best recipe)

Task weights come from ``--scheduler {fixed,linear,rwm}`` (see lm/schedulers.py, lm/README.md).
Dev metrics each epoch on ``--nlu-dev``: subword and word perplexity, intent accuracy, slot F1
(seqeval, conlleval-style spans). The best evaluation (``--select-metric``) is copied to
``best.pt``; training stops after ``--epochs``, after ``--patience`` evaluations without
improvement, or at the ``--max-steps`` / ``--max-minutes`` budget (the cut epoch is evaluated
and saved as a partial ``epoch-N.pt``; raising the budget continues it at the same batch).

The loop, resume and re-run rules are those of ``common/trainer.py``, shared with train-asr:
re-running the same command resumes from the last ``epoch-N.pt``; a ``best.pt`` or
``task_weights.*`` a killed run had not yet written is completed first; a finished run with
every output in place is a no-op ("Training already finished ...: nothing to do"). The exp dir
is locked while training (``.lock``): a second ``train-lm`` on it stops at once, naming the
pid of the first. Bad input (a missing or empty data / label file, a corrupt or foreign
checkpoint as ``--init-from`` or in the exp dir, a non-sentencepiece ``--bpe-model``, an
unwritable exp dir, a bad option value) stops before training with one line
``train-lm: error: ...`` naming the file or option, exit status 2. A batch with a non-finite
loss or gradient is skipped (counted warning).

Usage:
    train-lm --mode pretrain --preset default --exp-dir exp/lm/pretrain
    train-lm --mode finetune-lm --init-from exp/lm/pretrain/best.pt --train-text data/lm/finetune.txt \\
        --exp-dir exp/lm/finetune_lm
    train-lm --mode multitask --scheduler rwm --exp-dir exp/lm/multitask_rwm
    train-lm --mode finetune-multitask --scheduler rwm --init-from exp/lm/pretrain/best.pt \\
        --exp-dir exp/lm/pretrained_multitask_rwm
    train-lm --mode finetune-multitask --scheduler rwm --init-from exp/lm/pretrain/best.pt \\
        --nlu-extra data/manifests/snips_nlu_pseudo.jsonl.gz --exp-dir exp/lm/pseudo_multitask_rwm

OUTPUTS (in --exp-dir):
    epoch-N.pt, best.pt        checkpoints (model, optimizer, schedulers, RNG, train state,
                               config, env, tokenizer, label inventories)
    config.json, cmd.sh        the resolved configuration (+ git sha, versions); the command
    dev_metrics.jsonl          one row of dev metrics per evaluation (epoch end, budget stop)
    task_weights.tsv/.png      the task-weight trajectory
    summary.json               best epoch, its dev metrics, timings, stop reason
    log/train.jsonl            train losses and task weights every --log-interval steps
    log/log-train.txt          the log
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from common.bf16_check import require_cpu_bf16
from common.checkpoint import CheckpointError
from common.cli import TrainCli
from common.io import InputError
from common.trainer import (
    LoopOptions,
    Resume,
    StepOutput,
    Trainer,
    TrainState,
    config_dict,
    find_resume,
    training_session,
    write_if_changed,
)
from lm.config import PRESETS, ModelConfig, TrainConfig, get_preset, preset_help
from lm.data import (
    Batch,
    Example,
    Labels,
    Utterance,
    encode_utterances,
    iterate_batches,
    num_batches,
    read_labels,
    read_nlu,
    read_text,
)
from lm.model import MultitaskLM, init_from_lm, load_lm
from lm.objective import compute_loss, dev_metrics, dev_task_losses
from lm.schedulers import TASKS, TaskWeightScheduler, build_scheduler, plot_history
from lm.tokenizer import LMTokenizer, train_lm_bpe


class LmTrainer(Trainer):
    """``train-lm``'s parts of the loop: length-bucketed batches, the weighted multitask loss
    (weights from a task-weight scheduler, RWM fed with dev losses), dev perplexity / intent
    accuracy / slot F1, LR halving on a dev plateau."""

    train_log_name = "log/train.jsonl"
    dev_log_name = "dev_metrics.jsonl"

    def __init__(
        self,
        model: MultitaskLM,
        tok: LMTokenizer,
        cfg: TrainConfig,
        labels: Labels | None,
        data: tuple[list[Utterance], list[Utterance]],
        command: list[str] | None = None,
    ) -> None:
        self.tok, self.model_cfg, self.cfg, self.labels = tok, model.cfg, cfg, labels
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        opts = LoopOptions(
            num_epochs=cfg.epochs,
            grad_clip=cfg.grad_clip,
            log_interval=cfg.log_interval,
            patience=cfg.patience,
            **cfg.budget_options(),
        )
        extra = {"model": config_dict(self.model_cfg)}
        super().__init__(
            model, optimizer, opts, cfg.exp_dir, config=cfg, config_extra=extra, command=command
        )
        train_utts, dev_utts = data
        src = str(cfg.nlu_train if cfg.is_multitask else cfg.train_text)
        if cfg.is_multitask and cfg.nlu_extra is not None:
            src += f" + {cfg.nlu_extra}"
        self.train = _encode(train_utts, self.tok, self.model_cfg.max_len, f"Train data {src}")
        self.dev = _encode(dev_utts, self.tok, self.model_cfg.max_len, f"Dev data {cfg.nlu_dev}")
        self.dev_words = sum(len(u.words) for u in dev_utts)
        self.rwm_dev = self.dev[: cfg.rwm_dev_sentences]
        # the progress bar's total: the count does not depend on the epoch's shuffle
        self._num_batches = num_batches(self.train, cfg.batch_tokens, cfg.max_batch_sentences)
        self.lr_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.lr_decay, patience=0
        )
        self.sched = build_scheduler(
            cfg.scheduler,
            cfg.task_weights if cfg.is_multitask else (1.0, 0.0, 0.0),
            ramp_steps=cfg.ramp_steps,
            eps=cfg.rwm_eps,
            interval=cfg.rwm_interval,
            scale=cfg.rwm_scale,
            use=cfg.rwm_use,
            floor=cfg.rwm_floor,
            seed=cfg.seed,
        )
        self.title = f"{cfg.exp_dir.name}: {cfg.mode}, {cfg.scheduler}"

    def train_batches(self, epoch: int, skip: int) -> Any:
        c = self.cfg
        return iterate_batches(
            self.train,
            c.batch_tokens,
            c.max_batch_sentences,
            shuffle=True,
            seed=c.seed + epoch,
            skip=skip,
        )

    def batches_per_epoch(self, epoch: int) -> int:
        return self._num_batches

    def train_step(self, batch: Batch) -> StepOutput:
        step = self.state.step
        if self.sched.needs_dev and step % self.sched.interval == 0:
            self.sched.update(
                step, dev_task_losses(self.model, self.rwm_dev, self.cfg.batch_tokens)
            )
            self.model.train()
        w = self.sched.weights(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.cpu_bf16):
            loss, stats = compute_loss(self.model, batch, w)
        logged = {t: (v, 1.0) for t, v in stats.items()}
        logged.update({f"w_{t}": (x, 1.0) for t, x in zip(TASKS, w, strict=True)})
        return StepOutput(loss, logged)

    def evaluate(self) -> dict[str, float | None]:
        c = self.cfg
        metrics = dev_metrics(self.model, self.dev, self.labels, c.batch_tokens, self.dev_words)
        if not self.state.partial:  # the LR follows epoch ends, as in a run never cut short
            self.lr_sched.step(self.select_value(metrics))
        return metrics

    def select_value(self, metrics: dict[str, float | None]) -> float:
        name = selection_metric(self.cfg)
        v = metrics.get(name)
        if v is None:
            raise InputError(f"--select-metric {name}: not available for mode {self.cfg.mode}")
        return -v if name in ("intent_acc", "slot_f1") else v

    def state_extra(self) -> dict[str, Any]:
        return {
            "config": {"model": config_dict(self.model_cfg), "train": config_dict(self.cfg)},
            "tokenizer": self.tok.to_tensor(),
            "labels": dataclasses.asdict(self.labels) if self.labels else {},
            "lr_scheduler": self.lr_sched.state_dict(),
            "task_scheduler": self.sched.state_dict(),
        }

    def load_state_extra(self, ckpt: dict[str, Any]) -> None:
        self.lr_sched.load_state_dict(ckpt["lr_scheduler"])
        self.sched.load_state_dict(ckpt["task_scheduler"])

    def write_outputs(self) -> list[str]:
        return (
            ["task_weights.tsv/.png"]
            if _write_weights(self.sched, self.exp_dir, self.title)
            else []
        )


def selection_metric(cfg: TrainConfig) -> str:
    """The dev metric of ``best.pt`` and early stopping (``auto``: by mode)."""
    if cfg.select_metric != "auto":
        return cfg.select_metric
    return "total_loss" if cfg.is_multitask else "lm_loss"


def _read_data(cfg: TrainConfig, labels: Labels | None) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev) utterances; read before anything is trained so bad input fails fast."""
    if cfg.is_multitask:
        assert labels is not None
        train = read_nlu(cfg.nlu_train, labels.intents, labels.slot_tags)
        if cfg.nlu_extra is not None:
            extra = read_nlu(cfg.nlu_extra, labels.intents, labels.slot_tags)
            logging.info(
                "--nlu-extra %s: %d utterances added to the %d of --nlu-train",
                cfg.nlu_extra,
                len(extra),
                len(train),
            )
            train += extra
    else:
        train = read_text(cfg.train_text)
    dev = read_nlu(
        cfg.nlu_dev, labels.intents if labels else None, labels.slot_tags if labels else None
    )
    return train, dev


def _encode(utts: list[Utterance], tok: LMTokenizer, max_len: int, what: str) -> list[Example]:
    ex = encode_utterances(utts, tok, max_len)
    ntok = sum(len(e.tokens) + 1 for e in ex)
    nw = sum(len(u.words) for u in utts)
    logging.info(
        "%s: %d sentences, %d words, %d subword tokens (incl. eos)", what, len(ex), nw, ntok
    )
    return ex


def _resumed_model(
    resume: Resume, cfg: TrainConfig, labels: Labels | None
) -> tuple[MultitaskLM, LMTokenizer]:
    """The model of the exp dir's last checkpoint (its architecture wins over the options)."""
    saved = resume.ckpt.get("config")
    mode = saved.get("train", {}).get("mode") if isinstance(saved, dict) else None
    if mode != cfg.mode:
        raise CheckpointError(
            f"{resume.path}: written by --mode {mode}, not {cfg.mode}; use another --exp-dir"
            if mode
            else f"{resume.path}: not an LM checkpoint (no training mode in its config)"
        )
    lm = load_lm(resume.path, resume.ckpt)
    if labels is not None and (lm.intents, lm.slot_tags) != (labels.intents, labels.slot_tags):
        raise CheckpointError(f"{resume.path}: label inventories differ from --intents/--slot-tags")
    return lm.model, lm.tokenizer


def _init_model(
    model_cfg: ModelConfig, cfg: TrainConfig, labels: Labels | None
) -> tuple[MultitaskLM, LMTokenizer]:
    """A new model and its tokenizer: from ``--init-from``, or from scratch (training the
    sentencepiece model if needed)."""
    intents, slot_tags = (labels.intents, labels.slot_tags) if labels else ([], [])
    if cfg.init_from is not None:
        return init_from_lm(cfg.init_from, model_cfg, intents, slot_tags, cfg.seed)
    tok = train_lm_bpe(cfg.bpe_train_text, cfg.bpe_model, cfg.bpe_vocab_size)
    torch.manual_seed(cfg.seed)
    return MultitaskLM(model_cfg, tok.vocab_size, len(intents), len(slot_tags)), tok


def _write_weights(sched: TaskWeightScheduler, exp_dir: Path, title: str) -> bool:
    """``task_weights.tsv`` and ``.png`` from the scheduler's history; True if (re)written."""
    tsv = "step\tw_lm\tw_intent\tw_slot\n" + "".join(
        f"{int(r[0])}\t{r[1]:.6f}\t{r[2]:.6f}\t{r[3]:.6f}\n" for r in sched.history
    )
    png = exp_dir / "task_weights.png"
    if not write_if_changed(exp_dir / "task_weights.tsv", tsv) and png.is_file():
        return False
    plot_history(sched, png, title)
    return True


def run(
    model_cfg: ModelConfig, cfg: TrainConfig, command: list[str] | None = None
) -> dict[str, Any]:
    """Train (or resume) according to ``cfg``; returns the summary (best epoch, dev metrics).

    Raises:
        InputError: a bad option value, input file, or an exp dir in use.
        CheckpointError: a resumed / ``--init-from`` checkpoint that is corrupt or foreign.
    """
    model_cfg.validate()
    cfg.validate()
    if cfg.cpu_bf16:
        require_cpu_bf16()
    with training_session(cfg.exp_dir):
        torch.set_num_threads(cfg.num_threads)
        labels = None
        if cfg.is_multitask:
            labels = Labels(read_labels(cfg.intents), read_labels(cfg.slot_tags))
        data = _read_data(cfg, labels)
        resume = find_resume(cfg.exp_dir)
        if resume is not None:
            model, tok = _resumed_model(resume, cfg, labels)
        else:
            model, tok = _init_model(model_cfg, cfg, labels)
        model_cfg = model.cfg
        logging.info("Model config: %s", model_cfg)
        logging.info("Train config: %s", cfg)
        n_params = sum(p.numel() for p in model.parameters())
        logging.info(
            "Model: %s, %.2fM parameters, vocab %d", model_cfg.arch, n_params / 1e6, tok.vocab_size
        )
        trainer = LmTrainer(model, tok, cfg, labels, data, command)
        trainer.fit(resume)
        return _summary(cfg, trainer.state)


def _summary(cfg: TrainConfig, st: TrainState) -> dict[str, Any]:
    """Write ``summary.json`` (unless it already holds the same) and return it."""
    best = {"epoch": st.best_epoch, "step": st.best_step, **st.best_metrics}
    summary = {
        "mode": cfg.mode,
        "scheduler": cfg.scheduler,
        "best_epoch": st.best_epoch,
        "best_dev": best if st.best_epoch else None,
        "epochs_run": st.epoch,
        "steps": st.step,
        "train_seconds": round(st.elapsed_s, 1),
        "stop_reason": st.stop_reason or None,
        "nan_skipped": st.skipped_steps,
    }
    write_if_changed(cfg.exp_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    logging.info("Best epoch %s (%s): %s", st.best_epoch, selection_metric(cfg), best)
    return summary


CLI = TrainCli(
    prog="train-lm",
    doc=__doc__,
    train_cls=TrainConfig,
    model_cls=ModelConfig,
    presets=PRESETS,
    preset_configs=lambda name, args: get_preset(name, args.mode or "pretrain"),
    preset_help="size preset; its values differ per --mode (see PRESETS below) (default: default)",
    epilog=__doc__ + preset_help(),
)
build_configs = CLI.configs


def main(argv: list[str] | None = None) -> None:
    """``train-lm``: bad input (a missing or foreign file, a bad option value, an exp dir in
    use) ends with one line ``train-lm: error: ...`` and exit status 2."""
    CLI.main(run, argv)


if __name__ == "__main__":
    main()
