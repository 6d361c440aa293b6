"""Train the rescoring LM: LM pre-training, multitask (LM + intent + slot) training, fine-tuning.

Modes (``--mode``):
    pretrain            LM objective on ``--train-text`` (data/lm/pretrain.txt), from scratch
    finetune-lm         LM objective on ``--train-text`` (data/lm/finetune.txt = SNIPS train
                        text), from ``--init-from`` (the fair LM-only baseline)
    multitask           w_lm*L_lm + w_intent*L_intent + w_slot*L_slot on ``--nlu-train``, from
                        scratch
    finetune-multitask  the same, initialised from ``--init-from`` (seed work's best recipe)

Task weights come from ``--scheduler {fixed,linear,rwm}`` (see lm/schedulers.py, lm/README.md).
Dev metrics each epoch on ``--nlu-dev``: subword and word perplexity, intent accuracy, slot F1
(seqeval, conlleval-style spans). The best epoch (``--select-metric``) is copied to
``best.pt``; training stops early after ``--patience`` epochs without improvement or past
``--max-minutes``. Re-running the same command resumes from the last complete
``epoch-N.pt``. Outputs a killed run had not yet written after its last ``epoch-N.pt``
(``best.pt`` re-selected from the dev metrics, ``dev_metrics.jsonl``, ``task_weights.*``,
``summary.json``) are completed first; a finished run with every output in place is a no-op
("Training already finished ...: nothing to do").

The exp dir is locked while training (``.lock``): a second ``train-lm`` on it stops at once,
naming the pid of the first. Bad input (a missing or empty data / label file, a corrupt or
foreign checkpoint as ``--init-from`` or in the exp dir, a non-sentencepiece ``--bpe-model``, an
unwritable exp dir, a bad option value) stops before training with one line
``train-lm: error: ...`` naming the file or option, exit status 2.

Usage:
    train-lm --mode pretrain --preset default --exp-dir exp/lm/pretrain
    train-lm --mode finetune-lm --init-from exp/lm/pretrain/best.pt --train-text data/lm/finetune.txt \\
        --exp-dir exp/lm/finetune_lm
    train-lm --mode multitask --scheduler rwm --exp-dir exp/lm/multitask_rwm
    train-lm --mode finetune-multitask --scheduler rwm --init-from exp/lm/pretrain/best.pt \\
        --exp-dir exp/lm/pretrained_multitask_rwm

OUTPUTS (in --exp-dir):
    epoch-N.pt, best.pt        checkpoints (model, optimizer, schedulers, config, env, tokenizer)
    config.json, cmd.sh        the resolved configuration (+ git sha, versions); the command
    dev_metrics.jsonl          one line of dev metrics per epoch
    task_weights.tsv/.png      the task-weight trajectory
    summary.json               best epoch, its dev metrics, timings
    log/log-train-*.txt        the log
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.checkpoint import (
    CheckpointError,
    find_last_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from common.cli import (
    LOG_FORMAT,
    add_dataclass_args,
    cli_errors,
    cli_parser,
    dataclass_from_args,
    save_config,
    setup_logging,
)
from common.env import env_info
from common.io import InputError, atomic_path, atomic_write, dir_lock
from lm.config import PRESETS, ModelConfig, TrainConfig, get_preset
from lm.data import (
    IGNORE,
    Batch,
    Example,
    Utterance,
    encode_utterances,
    iterate_batches,
    num_batches,
    read_labels,
    read_nlu,
    read_text,
)
from lm.model import MultitaskLM
from lm.schedulers import TASKS, TaskWeightScheduler, build_scheduler, plot_history
from lm.tokenizer import LMTokenizer, train_lm_bpe


@dataclass
class Labels:
    intents: list[str]
    slot_tags: list[str]


# ---------------------------------------------------------------------------------------------
# losses and evaluation


def compute_loss(
    model: MultitaskLM, batch: Batch, weights: tuple[float, float, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted multitask loss of one batch.

    Returns:
        (loss, stats): ``loss`` = sum_k w_k * L_k with each L_k a mean (per subword token, per
        sentence, per word); ``stats`` holds the unweighted per-task means.
    """
    need_nlu = model.has_nlu_heads and (weights[1] > 0 or weights[2] > 0)
    out = model(batch.inputs, batch.lengths, batch.word_pos, nlu=need_nlu, word_end=batch.word_end)
    v = model.vocab_size
    lm = F.cross_entropy(out["lm"].reshape(-1, v), batch.targets.reshape(-1), ignore_index=IGNORE)
    loss = weights[0] * lm
    stats = {"lm": lm.item()}
    if need_nlu:
        if (batch.intents != IGNORE).any():
            li = F.cross_entropy(out["intent"], batch.intents, ignore_index=IGNORE)
            loss = loss + weights[1] * li
            stats["intent"] = li.item()
        if (batch.slots != IGNORE).any():
            ls = F.cross_entropy(
                out["slot"].reshape(-1, model.num_slot_tags),
                batch.slots.reshape(-1),
                ignore_index=IGNORE,
            )
            loss = loss + weights[2] * ls
            stats["slot"] = ls.item()
    return loss, stats


@torch.no_grad()
def evaluate(
    model: MultitaskLM,
    examples: list[Example],
    labels: Labels | None,
    batch_tokens: int,
    num_words: int,
    slot_f1: bool = True,
) -> dict[str, float | None]:
    """Dev metrics: mean per-task losses, subword / word perplexity, intent accuracy, slot F1.

    Word perplexity = exp(total NLL / (words + sentences)) (each sentence's eos counted as a
    word), comparable across subword inventories.
    """
    from seqeval.metrics import f1_score

    was_training = model.training
    model.eval()
    nll = tokens = 0.0
    int_loss = int_correct = int_n = 0.0
    slot_loss = slot_n = 0.0
    refs: list[list[str]] = []
    hyps: list[list[str]] = []
    nlu = model.has_nlu_heads and labels is not None
    for batch in iterate_batches(examples, batch_tokens):
        out = model(batch.inputs, batch.lengths, batch.word_pos, nlu=nlu, word_end=batch.word_end)
        nll += F.cross_entropy(
            out["lm"].reshape(-1, model.vocab_size),
            batch.targets.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        ).item()
        tokens += (batch.targets != IGNORE).sum().item()
        if not nlu:
            continue
        m = batch.intents != IGNORE
        if m.any():
            int_loss += F.cross_entropy(out["intent"][m], batch.intents[m], reduction="sum").item()
            int_correct += (out["intent"][m].argmax(-1) == batch.intents[m]).sum().item()
            int_n += m.sum().item()
        sm = batch.slots != IGNORE
        if sm.any():
            slot_loss += F.cross_entropy(out["slot"][sm], batch.slots[sm], reduction="sum").item()
            slot_n += sm.sum().item()
            pred = out["slot"].argmax(-1)
            for i in range(batch.slots.size(0) if slot_f1 else 0):
                k = int(sm[i].sum())
                if k:
                    refs.append([labels.slot_tags[j] for j in batch.slots[i, :k].tolist()])
                    hyps.append([labels.slot_tags[j] for j in pred[i, :k].tolist()])
    if was_training:
        model.train()
    metrics: dict[str, float | None] = {
        "lm_loss": nll / max(tokens, 1),
        "ppl": math.exp(min(nll / max(tokens, 1), 50)),
        "word_ppl": math.exp(min(nll / max(num_words + len(examples), 1), 50)),
        "intent_loss": int_loss / int_n if int_n else None,
        "intent_acc": int_correct / int_n if int_n else None,
        "slot_loss": slot_loss / slot_n if slot_n else None,
        "slot_f1": float(f1_score(refs, hyps)) if refs else None,
    }
    metrics["total_loss"] = (
        metrics["lm_loss"] + (metrics["intent_loss"] or 0.0) + (metrics["slot_loss"] or 0.0)
    )
    return metrics


def dev_task_losses(
    model: MultitaskLM, examples: list[Example], batch_tokens: int
) -> dict[str, float]:
    """Per-task mean dev losses on a fixed subset: the signal of the RWM scheduler."""
    m = evaluate(model, examples, Labels([], []), batch_tokens, num_words=0, slot_f1=False)
    return {
        "lm": float(m["lm_loss"]),
        "intent": float(m["intent_loss"] if m["intent_loss"] is not None else math.inf),
        "slot": float(m["slot_loss"] if m["slot_loss"] is not None else math.inf),
    }


# ---------------------------------------------------------------------------------------------
# setup helpers


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _read_data(cfg: TrainConfig, labels: Labels | None) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev) utterances; read before anything is trained so bad input fails fast."""
    if cfg.is_multitask:
        assert labels is not None
        train = read_nlu(cfg.nlu_train, labels.intents, labels.slot_tags)
    else:
        train = read_text(cfg.train_text)
    dev = read_nlu(
        cfg.nlu_dev,
        labels.intents if labels else None,
        labels.slot_tags if labels else None,
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


def _checkpoint_parts(state: dict[str, Any], path: Path) -> tuple[ModelConfig, LMTokenizer, dict]:
    """(model config, tokenizer, label inventories) of a ``train-lm`` checkpoint.

    Raises:
        CheckpointError: naming ``path`` for any other checkpoint (``train-asr``'s, an
            arbitrary ``torch.save``'d dict with a ``model`` entry).
    """
    try:
        model_cfg = ModelConfig.from_dict(state["config"]["model"])
        model_cfg.validate()
        tok = LMTokenizer.from_tensor(state["tokenizer"], source=f"{path} (tokenizer)")
        labels = state.get("labels") or {}
        if not isinstance(labels, dict) or not isinstance(state["model"], dict):
            raise TypeError("'labels' or 'model' is not a dict")
    except KeyError as e:
        raise CheckpointError(f"{path}: not an LM checkpoint (no {e} entry)") from None
    except (TypeError, InputError) as e:
        raise CheckpointError(f"{path}: not an LM checkpoint ({e})") from None
    return model_cfg, tok, labels


def _init_model(
    model_cfg: ModelConfig, cfg: TrainConfig, labels: Labels | None
) -> tuple[MultitaskLM, LMTokenizer, ModelConfig]:
    """Build the model and its tokenizer: from ``--init-from`` (architecture and tokenizer of
    the checkpoint win over the preset) or from scratch (training the sentencepiece model if
    needed)."""
    n_int = len(labels.intents) if labels else 0
    n_slot = len(labels.slot_tags) if labels else 0
    if cfg.init_from is None:
        tok = train_lm_bpe(cfg.bpe_train_text, cfg.bpe_model, cfg.bpe_vocab_size)
        torch.manual_seed(cfg.seed)
        return MultitaskLM(model_cfg, tok.vocab_size, n_int, n_slot), tok, model_cfg
    state = load_checkpoint(cfg.init_from)
    init_model_cfg, tok, init_labels = _checkpoint_parts(state, cfg.init_from)
    if init_model_cfg != model_cfg:
        logging.info("Architecture taken from %s: %s", cfg.init_from, init_model_cfg)
    # dropout and the (new) NLU heads follow the current config, the rest the checkpoint
    model_cfg = dataclasses.replace(
        init_model_cfg, dropout=model_cfg.dropout, slot_context=model_cfg.slot_context
    )
    if (
        labels
        and init_labels.get("intents")
        and (
            init_labels["intents"] != labels.intents
            or init_labels.get("slot_tags") != labels.slot_tags
        )
    ):
        raise CheckpointError(
            f"{cfg.init_from}: label inventories differ from --intents/--slot-tags"
        )
    torch.manual_seed(cfg.seed)
    model = MultitaskLM(model_cfg, tok.vocab_size, n_int, n_slot)
    own = model.state_dict()
    src = state["model"]
    loaded, skipped = [], []
    for k, v in src.items():
        if k in own and isinstance(v, torch.Tensor) and own[k].shape == v.shape:
            own[k] = v
            loaded.append(k)
        else:
            skipped.append(k)
    shared = [k for k in own if not k.startswith(("intent_head", "slot_head", "slot_rnn"))]
    missing = [k for k in shared if k not in loaded]
    if missing:
        raise CheckpointError(
            f"{cfg.init_from}: checkpoint does not provide shared parameters {missing[:5]}"
        )
    model.load_state_dict(own)
    logging.info(
        "Initialised %d tensors from %s (new: %s; ignored: %s)",
        len(loaded),
        cfg.init_from,
        [k for k in own if k not in loaded] or "none",
        skipped or "none",
    )
    return model, tok, model_cfg


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds it; True if written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeError):
        pass
    with atomic_write(path) as f:
        f.write(text)
    return True


def _write_weights(sched: TaskWeightScheduler, exp_dir: Path, title: str) -> bool:
    """``task_weights.tsv`` and ``.png`` from the scheduler's history; True if (re)written."""
    tsv = "step\tw_lm\tw_intent\tw_slot\n" + "".join(
        f"{int(r[0])}\t{r[1]:.6f}\t{r[2]:.6f}\t{r[3]:.6f}\n" for r in sched.history
    )
    png = exp_dir / "task_weights.png"
    if not _write_if_changed(exp_dir / "task_weights.tsv", tsv) and png.is_file():
        return False
    plot_history(sched, png, title)
    return True


def _write_dev_metrics(exp_dir: Path, state: dict[str, Any]) -> bool:
    """``dev_metrics.jsonl``, one row per epoch of ``state["history"]``; True if (re)written."""
    text = "".join(json.dumps(r) + "\n" for r in state["history"])
    return _write_if_changed(exp_dir / "dev_metrics.jsonl", text)


def _checkpoint_at(path: Path) -> tuple[int, int] | None:
    """(epoch, step) of checkpoint ``path``; None if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
        return int(ckpt["epoch"]), int(ckpt["step"])
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        logging.warning("%s: unreadable (%s); it will be rewritten", path, e)
        return None


def _complete_outputs(
    exp_dir: Path, state: dict[str, Any], sched: TaskWeightScheduler, title: str
) -> list[str]:
    """Make the per-epoch outputs agree with the checkpoint ``state`` was resumed from.

    A run killed after ``epoch-N.pt`` was written, before ``best.pt`` / ``dev_metrics.jsonl``
    / ``task_weights.*`` were, would otherwise keep a stale or missing ``best.pt`` for ever:
    the best epoch is re-selected from the dev metrics in ``state`` and its ``epoch-K.pt``
    copied to ``best.pt``; the other files are rewritten from ``state`` and the scheduler.

    Returns:
        The outputs that had to be written (empty when everything was in place).
    """
    written = []
    best_epoch = int(state["best_epoch"])
    if best_epoch:
        row = next((r for r in state["history"] if r["epoch"] == best_epoch), None)
        want = (best_epoch, int(row["step"])) if row and "step" in row else None
        best = exp_dir / "best.pt"
        if want is None or _checkpoint_at(best) != want:
            src = exp_dir / f"epoch-{best_epoch}.pt"
            if not src.is_file():
                raise CheckpointError(
                    f"{src}: missing, so {best} (the best epoch, {best_epoch}) cannot be restored"
                )
            with atomic_path(best) as tmp:
                shutil.copyfile(src, tmp)
            written.append(f"best.pt (= {src.name})")
    if _write_dev_metrics(exp_dir, state):
        written.append("dev_metrics.jsonl")
    if _write_weights(sched, exp_dir, title):
        written.append("task_weights.tsv/.png")
    return written


def _fmt(m: dict[str, Any]) -> str:
    parts = []
    for k in ("lm_loss", "ppl", "word_ppl", "intent_acc", "slot_f1", "total_loss"):
        if m.get(k) is not None:
            parts.append(f"{k}={m[k]:.4f}")
    return ", ".join(parts)


def _select_value(cfg: TrainConfig, m: dict[str, Any]) -> tuple[float, str]:
    """(value to minimise, metric name)."""
    name = cfg.select_metric
    if name == "auto":
        name = "total_loss" if cfg.is_multitask else "lm_loss"
    v = m.get(name)
    if v is None:
        raise InputError(f"--select-metric {name}: not available for mode {cfg.mode}")
    return (-v if name in ("intent_acc", "slot_f1") else v), name


# ---------------------------------------------------------------------------------------------
# training


def train_one_epoch(
    model: MultitaskLM,
    optimizer: torch.optim.Optimizer,
    sched: TaskWeightScheduler,
    train: list[Example],
    rwm_dev: list[Example],
    cfg: TrainConfig,
    epoch: int,
    state: dict[str, Any],
    t_start: float,
) -> bool:
    """One pass over ``train``. Returns True if the time budget ran out mid-epoch."""
    model.train()
    total = num_batches(train, cfg.batch_tokens, cfg.max_batch_sentences)
    sums = {t: 0.0 for t in TASKS}
    counts = {t: 0 for t in TASKS}
    t0 = time.time()
    ntok = 0
    bar = tqdm(
        iterate_batches(
            train, cfg.batch_tokens, cfg.max_batch_sentences, shuffle=True, seed=cfg.seed + epoch
        ),
        total=total,
        desc=f"epoch {epoch}",
        mininterval=30,
        disable=None,
    )
    for i, batch in enumerate(bar):
        step = state["step"]
        if sched.needs_dev and step % sched.interval == 0 and state.get("rwm_step") != step:
            sched.update(step, dev_task_losses(model, rwm_dev, cfg.batch_tokens))
            state["rwm_step"] = step
            model.train()
        w = sched.weights(step)
        loss, stats = compute_loss(model, batch, w)
        if not torch.isfinite(loss):
            state["nan_skipped"] += 1
            logging.warning(
                "epoch %d batch %d: non-finite loss, batch skipped (%d skipped so far)",
                epoch,
                i,
                state["nan_skipped"],
            )
            optimizer.zero_grad(set_to_none=True)
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(gnorm):
            state["nan_skipped"] += 1
            logging.warning(
                "epoch %d batch %d: non-finite gradient, batch skipped (%d skipped so far)",
                epoch,
                i,
                state["nan_skipped"],
            )
            optimizer.zero_grad(set_to_none=True)
            continue
        optimizer.step()
        state["step"] += 1
        ntok += batch.num_tokens
        for t, v in stats.items():
            sums[t] += v
            counts[t] += 1
        if state["step"] % cfg.log_interval == 0:
            avg = ", ".join(f"{t}={sums[t] / counts[t]:.3f}" for t in TASKS if counts[t])
            logging.info(
                "Epoch %d, batch %d/%d, step %d, weights %s, train losses %s, %.0f tok/s",
                epoch,
                i + 1,
                total,
                state["step"],
                "/".join(f"{x:.2f}" for x in w),
                avg,
                ntok / max(time.time() - t0, 1e-6),
            )
        if cfg.max_minutes > 0 and state["elapsed"] + time.time() - t_start > cfg.max_minutes * 60:
            logging.warning(
                "Time budget of %.1f min reached at epoch %d batch %d/%d: ending training",
                cfg.max_minutes,
                epoch,
                i + 1,
                total,
            )
            bar.close()
            return True
    bar.close()
    logging.info(
        "Epoch %d: %d batches, %.0f tok/s", epoch, total, ntok / max(time.time() - t0, 1e-6)
    )
    return False


def run(model_cfg: ModelConfig, cfg: TrainConfig, argv: list[str] | None = None) -> dict[str, Any]:
    """Train (or resume) according to ``cfg``; returns the summary (best epoch, dev metrics).

    The exp dir is locked (:func:`common.io.dir_lock`) for the whole run, so a second
    ``train-lm`` on it fails at once naming the pid of the first; the log goes to
    ``exp_dir/log/log-train-<time>.txt`` as well.

    Raises:
        InputError: a bad option value, input file, or an exp dir in use.
        CheckpointError: a resumed / ``--init-from`` checkpoint that is corrupt or foreign.
    """
    model_cfg.validate()
    cfg.validate()
    with dir_lock(cfg.exp_dir, "exp dir"):
        log_file = cfg.exp_dir / "log" / f"log-train-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        with _log_to(log_file):
            return _run_locked(model_cfg, cfg, argv)


@contextlib.contextmanager
def _log_to(path: Path):
    """Also send the root logger's records to ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _save_run_config(
    exp_dir: Path, cfg: TrainConfig, model_cfg: ModelConfig, argv: list[str] | None
) -> None:
    save_config(
        exp_dir / "config.json",
        cfg,
        extra={"model": _jsonable(dataclasses.asdict(model_cfg)), "argv": argv},
    )
    if argv is not None:
        with atomic_write(exp_dir / "cmd.sh") as f:
            f.write("# resume / reproduce (run from the recipe dir)\n")
            f.write(shlex.join(["train-lm", *argv]) + "\n")


def _run_locked(model_cfg: ModelConfig, cfg: TrainConfig, argv: list[str] | None) -> dict[str, Any]:
    exp_dir = cfg.exp_dir
    torch.set_num_threads(cfg.num_threads)
    t_start = time.time()

    labels = None
    if cfg.is_multitask:
        labels = Labels(read_labels(cfg.intents), read_labels(cfg.slot_tags))

    train_utts, dev_utts = _read_data(cfg, labels)

    last = find_last_checkpoint(exp_dir)
    resume = load_checkpoint(last) if last is not None else None
    if resume is not None:
        saved = resume.get("config")
        saved_mode = saved.get("train", {}).get("mode") if isinstance(saved, dict) else None
        if saved_mode != cfg.mode:
            raise CheckpointError(
                f"{last}: written by --mode {saved_mode}, not {cfg.mode}; use another --exp-dir"
                if saved_mode
                else f"{last}: not an LM checkpoint (no training mode in its config)"
            )
        model_cfg, tok, saved_labels = _checkpoint_parts(resume, last)
        if labels is not None and (
            saved_labels.get("intents") != labels.intents
            or saved_labels.get("slot_tags") != labels.slot_tags
        ):
            raise CheckpointError(f"{last}: label inventories differ from --intents/--slot-tags")
        model = MultitaskLM(
            model_cfg,
            tok.vocab_size,
            len(labels.intents) if labels else 0,
            len(labels.slot_tags) if labels else 0,
        )
        try:
            model.load_state_dict(resume["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{last}: does not match the model ({e})") from None
        logging.info(
            "Resuming from %s (epoch %s, step %s)", last, resume.get("epoch"), resume.get("step")
        )
    else:
        model, tok, model_cfg = _init_model(model_cfg, cfg, labels)

    logging.info("Model config: %s", model_cfg)
    logging.info("Train config: %s", cfg)
    n_params = sum(p.numel() for p in model.parameters())
    logging.info(
        "Model: %s, %.2fM parameters, vocab %d", model_cfg.arch, n_params / 1e6, tok.vocab_size
    )

    src = cfg.nlu_train if cfg.is_multitask else cfg.train_text
    train = _encode(train_utts, tok, model_cfg.max_len, f"Train data {src}")
    dev = _encode(dev_utts, tok, model_cfg.max_len, f"Dev data {cfg.nlu_dev}")
    dev_words = sum(len(u.words) for u in dev_utts)
    rwm_dev = dev[: cfg.rwm_dev_sentences]

    base = cfg.task_weights if cfg.is_multitask else (1.0, 0.0, 0.0)
    sched = build_scheduler(
        cfg.scheduler,
        base,
        ramp_steps=cfg.ramp_steps,
        eps=cfg.rwm_eps,
        interval=cfg.rwm_interval,
        scale=cfg.rwm_scale,
        use=cfg.rwm_use,
        floor=cfg.rwm_floor,
        seed=cfg.seed,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.lr_decay, patience=0
    )
    state: dict[str, Any] = {
        "step": 0,
        "nan_skipped": 0,
        "elapsed": 0.0,
        "best_value": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "finished": False,
        "history": [],
    }
    start_epoch = 1
    title = f"{exp_dir.name}: {cfg.mode}, {cfg.scheduler}"
    if resume is not None:
        try:
            optimizer.load_state_dict(resume["optimizer"])
            lr_sched.load_state_dict(resume["lr_scheduler"])
            sched.load_state_dict(resume["task_scheduler"])
            state.update(resume["train_state"])
            torch.set_rng_state(resume["rng"])
            start_epoch = int(resume["epoch"]) + 1
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{last}: cannot restore the training state ({e!r})") from None
        completed = _complete_outputs(exp_dir, state, sched, title)
        if completed:
            logging.warning(
                "%s: completed outputs a killed run had not written: %s", exp_dir, completed
            )
        if state["finished"]:
            if not (exp_dir / "config.json").is_file():
                _save_run_config(exp_dir, cfg, model_cfg, argv)
            logging.info(
                "Training already finished (%s, %s): %s",
                last,
                state.get("stop_reason"),
                "completed the missing outputs" if completed else "nothing to do",
            )
            return _summary(exp_dir, state, cfg)

    _save_run_config(exp_dir, cfg, model_cfg, argv)
    # a fresh run was seeded in _init_model; a resumed one restored the RNG state above
    ckpt_base = {
        "config": {
            "model": _jsonable(dataclasses.asdict(model_cfg)),
            "train": _jsonable(dataclasses.asdict(cfg)),
        },
        "tokenizer": tok.to_tensor(),
        "labels": dataclasses.asdict(labels) if labels else {},
        "env": env_info(),
    }
    select_name = _select_value(
        cfg, {"lm_loss": 0.0, "total_loss": 0.0, "intent_acc": 0.0, "slot_f1": 0.0}
    )[1]
    for epoch in range(start_epoch, cfg.epochs + 1):
        t_epoch = time.time()
        out_of_time = train_one_epoch(
            model, optimizer, sched, train, rwm_dev, cfg, epoch, state, t_start
        )
        metrics = evaluate(model, dev, labels, cfg.batch_tokens, dev_words)
        value, _ = _select_value(cfg, metrics)
        lr_sched.step(value)
        improved = value < state["best_value"]
        if improved:
            state["best_value"], state["best_epoch"], state["bad_epochs"] = value, epoch, 0
        else:
            state["bad_epochs"] += 1
        state["elapsed"] += time.time() - t_start
        t_start = time.time()
        row = {
            "epoch": epoch,
            "step": state["step"],
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": round(time.time() - t_epoch, 1),
            "elapsed_seconds": round(state["elapsed"], 1),
            **metrics,
        }
        state["history"].append(row)
        logging.info(
            "Epoch %d dev: %s (%s%s), %.0f s",
            epoch,
            _fmt(metrics),
            select_name,
            " improved" if improved else f" no improvement x{state['bad_epochs']}",
            row["epoch_seconds"],
        )
        stop = None
        if out_of_time:
            stop = "time budget"
        elif state["bad_epochs"] >= cfg.patience:
            stop = f"early stopping ({cfg.patience} epochs without improvement)"
        elif epoch == cfg.epochs:
            stop = "max epochs"
        state["finished"] = stop is not None
        state["stop_reason"] = stop
        ckpt = {
            **ckpt_base,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_sched.state_dict(),
            "task_scheduler": sched.state_dict(),
            "train_state": _jsonable(state),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
            "step": state["step"],
            "dev_metrics": _jsonable(metrics),
        }
        # epoch-N.pt first: a run killed before the files below are written completes them
        # from it when re-run (_complete_outputs)
        save_checkpoint(exp_dir / f"epoch-{epoch}.pt", ckpt)
        if improved:
            save_checkpoint(exp_dir / "best.pt", ckpt)
        _write_dev_metrics(exp_dir, state)
        _write_weights(sched, exp_dir, title)
        if stop:
            logging.info("Stopping after epoch %d: %s", epoch, stop)
            break
    if state["nan_skipped"]:
        logging.warning(
            "%d batches were skipped for non-finite loss/gradients", state["nan_skipped"]
        )
    return _summary(exp_dir, state, cfg)


def _summary(exp_dir: Path, state: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """Write ``summary.json`` (unless it already holds the same) and return it."""
    best = next((r for r in state["history"] if r["epoch"] == state["best_epoch"]), None)
    summary = {
        "mode": cfg.mode,
        "scheduler": cfg.scheduler,
        "best_epoch": state["best_epoch"],
        "best_dev": best,
        "epochs_run": len(state["history"]),
        "steps": state["step"],
        "train_seconds": round(state["elapsed"], 1),
        "stop_reason": state.get("stop_reason"),
        "nan_skipped": state["nan_skipped"],
    }
    _write_if_changed(exp_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    logging.info("Best epoch %s: %s", state["best_epoch"], _fmt(best or {}))
    return summary


def _preset_help() -> str:
    """The values each preset changes (the defaults printed per option are the class defaults)."""
    lines = ["", "PRESETS (option defaults below are overridden per --preset and --mode):"]
    for name in PRESETS:
        for mode in ("pretrain", "multitask", "finetune-multitask", "finetune-lm"):
            m, t = get_preset(name, mode)
            diff = {
                f.name: getattr(t, f.name)
                for f in dataclasses.fields(TrainConfig)
                if f.name != "mode" and getattr(t, f.name) != getattr(TrainConfig(), f.name)
            }
            diff.update(
                {
                    f.name: getattr(m, f.name)
                    for f in dataclasses.fields(ModelConfig)
                    if getattr(m, f.name) != getattr(ModelConfig(), f.name)
                }
            )
            items = ", ".join(f"{k}={v}" for k, v in diff.items()) or "class defaults"
            lines.append(f"    {name} / {mode}: {items}")
    return "\n".join(lines) + "\n"


def get_parser() -> argparse.ArgumentParser:
    parser = cli_parser(__doc__, "train-lm", epilog=__doc__ + _preset_help())
    parser.add_argument(
        "--preset", default="default", choices=PRESETS, help="size preset (default: default)"
    )
    add_dataclass_args(parser, TrainConfig, group_title="training")
    add_dataclass_args(parser, ModelConfig, group_title="model")
    return parser


def build_configs(argv: list[str] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Preset for (``--preset``, ``--mode``) overridden by the options given."""
    args = get_parser().parse_args(argv)
    model_base, train_base = get_preset(args.preset, args.mode or "pretrain")
    model_cfg = dataclass_from_args(ModelConfig, args, model_base)
    train_cfg = dataclass_from_args(TrainConfig, args, train_base)
    return model_cfg, train_cfg


def main(argv: list[str] | None = None) -> None:
    """``train-lm``: bad input (a missing or foreign file, a bad option value, an exp dir in
    use) ends with one line ``train-lm: error: ...`` and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    with cli_errors("train-lm"):
        model_cfg, train_cfg = build_configs(argv)
        run(model_cfg, train_cfg, argv)


if __name__ == "__main__":
    main()
