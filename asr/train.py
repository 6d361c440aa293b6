"""Train a Conformer RNN-T (torchaudio) on Lhotse fbank cuts, with a CTC auxiliary loss.

Usage:
    train-asr --preset default --exp-dir exp/asr/conformer_rnnt \
        --train-cuts data/fbank/snips_cuts_train.jsonl.gz \
        --dev-cuts data/fbank/snips_cuts_dev.jsonl.gz --bpe-model data/lang_bpe_128/bpe.model
    torchrun --nproc-per-node 2 -m asr.train --preset tiny ...     # DDP (gloo on CPU)

Outputs in ``exp-dir``: ``config.json``, ``epoch-N.pt`` (model, optimizer, scheduler, sampler,
RNG, config, env), ``log/train.csv`` (step, lr, losses), ``log/valid.csv`` (dev loss and greedy
WER), ``log/log-train.txt`` (``ddp-sync.txt`` under DDP). An existing ``epoch-N.pt`` is resumed
automatically (``--resume false`` to refuse); every epoch reseeds all RNGs with ``seed + epoch``,
so resuming from an epoch boundary reproduces the uninterrupted run up to floating-point
nondeterminism of multithreaded CPU/GPU kernels. A ``--max-minutes`` or ``--max-steps`` stop
saves a *partial* epoch checkpoint; resuming it fast-forwards the Lhotse sampler to the same
batch, but dropout/SpecAugment draw a different random stream for the rest of that epoch. On
resume, CSV rows logged after the resumed checkpoint's step (by a run killed before its next
checkpoint) are dropped, so the steps in the logs stay unique and increasing.

A re-run with nothing left to train (all ``--num-epochs`` done, ``--max-steps`` reached, the
``--max-minutes`` budget spent: the budgets count earlier runs) logs "Training already
finished ...: nothing to do" and changes no checkpoint; raise the limit to continue.

The exp dir is locked while training (``.lock``; rank 0 holds it under DDP): a second
``train-asr`` on it stops at once, naming the pid of the first. Bad input (a missing, empty or
foreign CutSet or BPE model, features of another dimension than ``--feature-dim``, a
``--vocab-size`` other than the BPE model's, a corrupt or foreign checkpoint in the exp dir, an
unwritable exp dir, a bad option value) stops before training with one line
``train-asr: error: ...`` naming the file or option, exit status 2.

Bad data never stops a run: cuts with an empty transcript or fewer encoder frames than tokens
are dropped up front (counted warning; an error if none are left); utterances with a
non-finite loss are masked out of the batch, and a step whose gradient is non-finite is skipped
(counted warning).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import logging
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from asr.config import PRESETS, ModelConfig, TrainConfig, get_model_preset, get_train_preset
from asr.data import (
    Tokenizer,
    check_feature_dim,
    compute_cmvn,
    filter_cuts,
    load_cuts,
    make_dataloader,
)
from asr.loss import RNNT_LOSSES
from asr.model import Transducer, build_model, num_params
from asr.search import GreedySearch
from common.checkpoint import (
    CheckpointError,
    find_last_checkpoint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from common.cli import (
    add_dataclass_args,
    cli_errors,
    cli_parser,
    dataclass_from_args,
    save_config,
    setup_logging,
)
from common.env import env_info
from common.io import InputError, atomic_write, dir_lock
from common.wer import compute_wer


def to_jsonable(cfg) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


class NoamScheduler(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up then inverse-square-root decay (Vaswani et al., 2017, "Noam")."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
        w = max(1, warmup_steps)
        super().__init__(optimizer, lambda s: min((s + 1) / w, math.sqrt(w / (s + 1))))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def compute_loss(
    model: torch.nn.Module, batch: dict, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, dict[str, float]]:
    """RNN-T (+ ``ctc_weight`` x CTC) loss of a batch, normalised per target token.

    Utterances with an empty label sequence, fewer encoder frames than labels, or a non-finite
    loss are masked out (counted in ``stats["bad_utts"]``).

    Returns:
        (loss, stats) where stats holds summed rnnt/ctc losses, token and utterance counts.
    """
    feats = batch["feats"].to(device)  # (N, T, C)
    feat_lens = batch["feat_lens"].to(device)  # (N,)
    targets = batch["targets"].to(device)  # (N, U)
    target_lens = batch["target_lens"].to(device)  # (N,)
    assert feats.dim() == 3 and targets.dim() == 2, (feats.shape, targets.shape)
    if targets.shape[1] == 0:  # every label sequence empty: keep shapes valid
        targets = targets.new_zeros(targets.shape[0], 1)
    logits, enc_lens, ctc_lp = model(feats, feat_lens, targets, target_lens)
    rnnt = RNNT_LOSSES[cfg.loss_impl](logits.float(), targets, enc_lens, target_lens)  # (N,)
    if cfg.ctc_weight > 0:
        ctc = F.ctc_loss(
            ctc_lp.float().transpose(0, 1),
            targets,
            enc_lens,
            target_lens,
            blank=0,
            reduction="none",
            zero_infinity=True,
        )
    else:
        ctc = torch.zeros_like(rnnt)
    valid = (target_lens > 0) & (enc_lens >= target_lens) & rnnt.isfinite() & ctc.isfinite()
    per_utt = torch.where(valid, rnnt + cfg.ctc_weight * ctc, torch.zeros_like(rnnt))
    num_tokens = int(target_lens[valid].sum())
    loss = per_utt.sum() / max(num_tokens, 1)
    stats = {
        "rnnt": float(torch.where(valid, rnnt.detach(), 0.0).sum()),
        "ctc": float(torch.where(valid, ctc.detach(), 0.0).sum()),
        "tokens": float(num_tokens),
        "utts": float(valid.sum()),
        "bad_utts": float((~valid).sum()),
    }
    return loss, stats


class _Forward(torch.nn.Module):
    """Wraps ``Transducer.forward_all`` as ``forward`` so DDP hooks see the whole graph."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats, feat_lens, targets, target_lens):
        return self.model.forward_all(feats, feat_lens, targets, target_lens)


@torch.no_grad()
def validate(model: Transducer, dl, cfg: TrainConfig, device) -> float:
    """Dev RNN-T+CTC loss per token."""
    was_training = model.training
    model.eval()
    fwd = _Forward(model)
    tot, tok = 0.0, 0.0
    for batch in dl:
        _, st = compute_loss(fwd, batch, cfg, device)
        tot += st["rnnt"] + cfg.ctc_weight * st["ctc"]
        tok += st["tokens"]
    model.train(was_training)
    return tot / max(tok, 1.0)


@torch.no_grad()
def greedy_wer(model: Transducer, dl, tok: Tokenizer, device) -> float:
    was_training = model.training
    model.eval()
    search = GreedySearch(max_sym_per_frame=3)  # the loss allows several symbols per frame
    results = []
    for batch in dl:
        hyps = search(model, batch["feats"].to(device), batch["feat_lens"].to(device))
        for uid, ref, nb in zip(batch["ids"], batch["texts"], hyps, strict=True):
            results.append((uid, ref.split(), tok.decode(list(nb[0].tokens)).split()))
    model.train(was_training)
    return compute_wer(results).wer


class CsvLog:
    """Append-only CSV (header written once), flushed each row so a killed run keeps its log.

    ``keep_through_step``: rows with a larger ``step`` were written by a run that was killed
    after its last checkpoint (step ``keep_through_step``); they are dropped (the file is
    rewritten atomically) so the resumed run's rows do not repeat their steps.
    """

    def __init__(self, path: Path, fields: list[str], keep_through_step: int | None = None) -> None:
        self.path, self.fields = path, fields
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_through_step is not None and path.is_file():
            self._truncate(keep_through_step)
        new = not path.is_file()
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        if new:
            self.w.writeheader()

    def _truncate(self, step: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = []
        for lineno, row in enumerate(rows, start=2):
            try:
                if int(row.get("step") or 0) <= step:
                    kept.append(row)
            except ValueError:
                raise InputError(
                    f"{self.path}:{lineno}: step {row.get('step')!r} is not an integer"
                ) from None
        if len(kept) == len(rows):
            return
        logging.warning(
            "%s: dropped %d row(s) after step %d (written after the last checkpoint)",
            self.path,
            len(rows) - len(kept),
            step,
        )
        with atomic_write(self.path) as f:
            w = csv.DictWriter(
                f, fieldnames=self.fields, extrasaction="ignore", lineterminator="\r\n"
            )
            w.writeheader()
            w.writerows(kept)

    def write(self, **row) -> None:
        self.w.writerow({k: row.get(k, "") for k in self.fields})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


@dataclasses.dataclass
class TrainState:
    epoch: int = 1
    step: int = 0
    skipped_steps: int = 0
    bad_utts: int = 0
    start_time: float = 0.0
    elapsed_before: float = 0.0  # wall seconds spent in earlier (resumed) runs

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.start_time


def train_one_epoch(
    model: Transducer,
    ddp_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: NoamScheduler,
    train_dl,
    valid_dl,
    wer_dl,
    tok: Tokenizer,
    cfg: TrainConfig,
    state: TrainState,
    device: torch.device,
    rank: int,
    world_size: int,
    train_log: CsvLog | None,
    valid_log: CsvLog | None,
) -> bool:
    """One pass over ``train_dl``. Returns False if stopped early (max steps / minutes)."""
    model.train()
    amp = cfg.use_amp and device.type == "cuda"
    acc = {"loss": 0.0, "rnnt": 0.0, "ctc": 0.0, "tokens": 0.0}
    bar = tqdm(train_dl, desc=f"epoch {state.epoch}", disable=rank != 0, mininterval=5)
    for batch in bar:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, st = compute_loss(ddp_model, batch, cfg, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # DDP has all-reduced the gradients, so every rank takes the same decision here.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if st["bad_utts"]:
            state.bad_utts += int(st["bad_utts"])
            logging.warning(
                "step %d: masked %d bad utterance(s) (empty/too short/non-finite loss); %d so far",
                state.step,
                int(st["bad_utts"]),
                state.bad_utts,
            )
        if not torch.isfinite(grad_norm):
            state.skipped_steps += 1
            optimizer.zero_grad(set_to_none=True)
            logging.warning(
                "step %d: non-finite gradient, step skipped (%d so far)",
                state.step,
                state.skipped_steps,
            )
        else:
            optimizer.step()
        scheduler.step()
        state.step += 1
        acc["rnnt"] += st["rnnt"]
        acc["ctc"] += st["ctc"]
        acc["tokens"] += st["tokens"]
        if rank == 0 and state.step % cfg.log_interval == 0 and acc["tokens"]:
            lr = scheduler.get_last_lr()[0]
            rnnt_t, ctc_t = acc["rnnt"] / acc["tokens"], acc["ctc"] / acc["tokens"]
            bar.set_postfix(rnnt=f"{rnnt_t:.3f}", ctc=f"{ctc_t:.3f}", lr=f"{lr:.2e}")
            logging.info(
                "epoch %d step %d: rnnt %.4f ctc %.4f per token, lr %.2e, grad-norm %.2f, %.0f s",
                state.epoch,
                state.step,
                rnnt_t,
                ctc_t,
                lr,
                float(grad_norm),
                state.elapsed(),
            )
            if train_log:
                train_log.write(
                    step=state.step,
                    epoch=state.epoch,
                    lr=f"{lr:.6g}",
                    rnnt=f"{rnnt_t:.5f}",
                    ctc=f"{ctc_t:.5f}",
                    grad_norm=f"{float(grad_norm):.4f}",
                    skipped=state.skipped_steps,
                    elapsed_s=f"{state.elapsed():.1f}",
                )
            acc = {k: 0.0 for k in acc}
        if cfg.valid_interval and state.step % cfg.valid_interval == 0 and wer_dl is not None:
            if rank == 0:
                wer = greedy_wer(model, wer_dl, tok, device)
                logging.info(
                    "step %d: dev greedy WER %.2f%% (%d cuts)", state.step, wer, cfg.valid_wer_cuts
                )
                if valid_log:
                    valid_log.write(
                        step=state.step,
                        epoch=state.epoch,
                        dev_greedy_wer=f"{wer:.2f}",
                        elapsed_s=f"{state.elapsed():.1f}",
                    )
            if world_size > 1:
                dist.barrier()
        if cfg.max_steps and state.step >= cfg.max_steps:
            return False
        if cfg.max_minutes and state.elapsed() >= 60 * cfg.max_minutes:
            logging.info("time budget of %.1f min reached at step %d", cfg.max_minutes, state.step)
            return False
    return True


def resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(cfg.device)


def run(rank: int, world_size: int, model_cfg: ModelConfig, cfg: TrainConfig) -> Path:
    """Train (rank ``rank`` of ``world_size``); returns the last checkpoint path.

    Rank 0 holds :func:`common.io.dir_lock` on the exp dir for the whole run: a second trainer
    started on the same exp dir (a re-run while a killed recipe's trainer still runs) fails at
    once with an :class:`InputError` naming the folder and the pid holding it.
    """
    cfg.validate()
    model_cfg.validate()
    lock = dir_lock(cfg.exp_dir, "exp dir") if rank == 0 else contextlib.nullcontext()
    with lock:
        return _run_locked(rank, world_size, model_cfg, cfg)


def _restore(
    last: Path,
    model: Transducer,
    model_cfg: ModelConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: NoamScheduler,
) -> tuple[TrainState, dict | None]:
    """Load ``last`` into model/optimizer/scheduler; returns the train state and, for a partial
    epoch, the sampler state to fast-forward to.

    Raises:
        CheckpointError: naming ``last`` if it is corrupt, not a ``train-asr`` checkpoint, or of
            another model config.
    """
    ckpt = load_checkpoint(last)
    saved = ckpt.get("config")
    saved = saved.get("model") if isinstance(saved, dict) else None
    if saved != to_jsonable(model_cfg):
        raise CheckpointError(
            f"{last}: model config {saved} differs from the requested {to_jsonable(model_cfg)}"
        )
    load_model_state(model, ckpt, last)
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        partial = bool(ckpt.get("partial", False))
        state = TrainState(
            epoch=int(ckpt["epoch"]) + (0 if partial else 1),
            step=int(ckpt["step"]),
            skipped_steps=int(ckpt.get("skipped_steps", 0)),
            bad_utts=int(ckpt.get("bad_utts", 0)),
            elapsed_before=float(ckpt.get("elapsed_s", 0.0)),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{last}: cannot restore the training state ({e})") from e
    logging.info(
        "resumed from %s (%s epoch %d, step %d)",
        last,
        "partial" if partial else "complete",
        int(ckpt["epoch"]),
        state.step,
    )
    return state, (ckpt.get("sampler") if partial else None)


def finished_reason(state: TrainState, cfg: TrainConfig, elapsed_s: float) -> str | None:
    """Why a run in ``state`` (``elapsed_s`` wall seconds trained) has nothing left to train
    under ``cfg``; None if it has."""
    if state.epoch > cfg.num_epochs:
        return f"all {cfg.num_epochs} epochs trained"
    if cfg.max_steps and state.step >= cfg.max_steps:
        return f"--max-steps {cfg.max_steps} reached (step {state.step})"
    if cfg.max_minutes and elapsed_s >= 60 * cfg.max_minutes:
        return f"--max-minutes {cfg.max_minutes:g} used ({elapsed_s / 60:.1f} min trained)"
    return None


def _load_train_cuts(cfg: TrainConfig, model_cfg: ModelConfig, tok: Tokenizer):
    """(train, dev) CutSets, checked: features of the model's dimension, some usable cuts."""
    train_cuts = load_cuts(cfg.train_cuts)
    check_feature_dim(train_cuts, model_cfg.feature_dim, cfg.train_cuts)
    n = len(train_cuts)
    train_cuts = filter_cuts(train_cuts, tok, model_cfg.subsampling_factor)
    if len(train_cuts) == 0:
        raise InputError(
            f"{cfg.train_cuts}: all {n} cuts dropped (empty transcript, or fewer encoder frames "
            "than BPE tokens)"
        )
    dev_cuts = load_cuts(cfg.dev_cuts)
    check_feature_dim(dev_cuts, model_cfg.feature_dim, cfg.dev_cuts)
    return train_cuts, dev_cuts


def _run_locked(rank: int, world_size: int, model_cfg: ModelConfig, cfg: TrainConfig) -> Path:
    exp_dir = Path(cfg.exp_dir)
    setup_logging(
        exp_dir / "log" / f"log-train-rank{rank}.txt"
        if world_size > 1
        else exp_dir / "log" / "log-train.txt"
    )
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(cfg, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.num_threads > 0 and device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    tok = Tokenizer(cfg.bpe_model)
    if model_cfg.vocab_size and model_cfg.vocab_size != tok.vocab_size:
        raise InputError(
            f"--vocab-size {model_cfg.vocab_size} does not match {cfg.bpe_model} "
            f"({tok.vocab_size} pieces): give the matching --bpe-model, or drop --vocab-size"
        )
    model_cfg = dataclasses.replace(model_cfg, vocab_size=tok.vocab_size)
    logging.info("model config %s", model_cfg)
    logging.info("train config %s", cfg)
    logging.info("env %s", env_info())

    seed_everything(cfg.seed)
    model = build_model(model_cfg)
    logging.info("model parameters: %d", num_params(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    scheduler = NoamScheduler(optimizer, cfg.warmup_steps)
    state = TrainState()

    last = find_last_checkpoint(exp_dir)
    sampler_state = None
    if last is not None:
        if not cfg.resume:
            raise CheckpointError(f"{last} exists and --resume is false; use a new --exp-dir")
        state, sampler_state = _restore(last, model, model_cfg, optimizer, scheduler)
        done = finished_reason(state, cfg, state.elapsed_before)
        if done is not None:
            if rank == 0 and not (exp_dir / "config.json").is_file():
                save_config(
                    exp_dir / "config.json",
                    cfg,
                    extra={"model": to_jsonable(model_cfg), "world_size": world_size},
                )
            if world_size > 1:
                check_ranks_in_sync(model, exp_dir, rank, world_size)
            logging.info("Training already finished (%s, %s): nothing to do", last, done)
            return last

    train_cuts, dev_cuts = _load_train_cuts(cfg, model_cfg, tok)
    if last is None:
        mean, std = compute_cmvn(train_cuts, cfg.cmvn_cuts)
        model.set_cmvn(mean, std)
    if rank == 0:
        save_config(
            exp_dir / "config.json",
            cfg,
            extra={"model": to_jsonable(model_cfg), "world_size": world_size},
        )
    model.to(device)
    for s in optimizer.state.values():
        for k, v in s.items():
            if torch.is_tensor(v) and k != "step":
                s[k] = v.to(device)

    fwd = _Forward(model)
    ddp_model: torch.nn.Module = (
        DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)
        if world_size > 1
        else fwd
    )

    valid_dl = make_dataloader(
        dev_cuts, tok, cfg.max_duration, shuffle=False, num_workers=cfg.num_workers
    )
    wer_dl = make_dataloader(
        dev_cuts.subset(first=min(cfg.valid_wer_cuts, len(dev_cuts))),
        tok,
        cfg.max_duration,
        shuffle=False,
    )
    train_log = (
        CsvLog(
            exp_dir / "log" / "train.csv",
            ["step", "epoch", "lr", "rnnt", "ctc", "grad_norm", "skipped", "elapsed_s"],
            keep_through_step=state.step,
        )
        if rank == 0
        else None
    )
    valid_log = (
        CsvLog(
            exp_dir / "log" / "valid.csv",
            ["step", "epoch", "dev_loss", "dev_greedy_wer", "elapsed_s"],
            keep_through_step=state.step,
        )
        if rank == 0
        else None
    )

    state.start_time = time.time()
    last_path = last
    while state.epoch <= cfg.num_epochs:
        seed_everything(cfg.seed + state.epoch)
        spec = None
        if cfg.spec_augment and state.epoch >= cfg.spec_aug_from_epoch:
            from lhotse.dataset import SpecAugment

            spec = SpecAugment(
                time_warp_factor=cfg.spec_time_warp_factor,
                num_frame_masks=cfg.spec_num_frame_masks,
                frames_mask_size=cfg.spec_frames_mask_size,
                features_mask_size=cfg.spec_features_mask_size,
                num_feature_masks=cfg.spec_num_feature_masks,
            )
        train_dl = make_dataloader(
            train_cuts,
            tok,
            cfg.max_duration,
            shuffle=True,
            num_buckets=cfg.num_buckets,
            spec_augment=spec,
            num_workers=cfg.num_workers,
            world_size=world_size,
            rank=rank,
            seed=cfg.seed,
            speed_perturb=cfg.speed_perturb,
            num_mel_bins=model_cfg.feature_dim,
        )
        train_dl.sampler.set_epoch(state.epoch)
        if sampler_state is not None:
            train_dl.sampler.load_state_dict(sampler_state)
            sampler_state = None
        finished = train_one_epoch(
            model,
            ddp_model,
            optimizer,
            scheduler,
            train_dl,
            valid_dl,
            wer_dl,
            tok,
            cfg,
            state,
            device,
            rank,
            world_size,
            train_log,
            valid_log,
        )
        if rank == 0:
            dev_loss = validate(model, valid_dl, cfg, device)
            wer = greedy_wer(model, wer_dl, tok, device)
            logging.info(
                "epoch %d%s: dev loss %.4f per token, dev greedy WER %.2f%%, %.0f s",
                state.epoch,
                "" if finished else " (partial)",
                dev_loss,
                wer,
                state.elapsed(),
            )
            valid_log.write(
                step=state.step,
                epoch=state.epoch,
                dev_loss=f"{dev_loss:.5f}",
                dev_greedy_wer=f"{wer:.2f}",
                elapsed_s=f"{state.elapsed():.1f}",
            )
            last_path = exp_dir / f"epoch-{state.epoch}.pt"
            save_checkpoint(
                last_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "sampler": train_dl.sampler.state_dict(),
                    "config": {"model": to_jsonable(model_cfg), "train": to_jsonable(cfg)},
                    "epoch": state.epoch,
                    "step": state.step,
                    "partial": not finished,
                    "skipped_steps": state.skipped_steps,
                    "bad_utts": state.bad_utts,
                    "elapsed_s": state.elapsed(),
                    "dev_loss": dev_loss,
                    "dev_greedy_wer": wer,
                    "env": env_info(),
                },
            )
        if world_size > 1:
            dist.barrier()
        if not finished:
            break
        state.epoch += 1

    for log in (train_log, valid_log):
        if log is not None:
            log.close()
    if world_size > 1:
        check_ranks_in_sync(model, exp_dir, rank, world_size)
    logging.info(
        "done (%s): %d steps, %.1f min, %d skipped steps, %d masked utterances",
        finished_reason(state, cfg, state.elapsed()) or "stopped",
        state.step,
        state.elapsed() / 60,
        state.skipped_steps,
        state.bad_utts,
    )
    return last_path


def check_ranks_in_sync(model: torch.nn.Module, exp_dir: Path, rank: int, world_size: int) -> None:
    """All-gather a float64 checksum of every parameter; rank 0 writes ``ddp-sync.txt``."""
    vec = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    gathered = [torch.zeros_like(vec) for _ in range(world_size)]
    dist.all_gather(gathered, vec)
    if rank == 0:
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        with atomic_write(exp_dir / "ddp-sync.txt") as f:
            f.write(
                "".join(
                    f"rank {r} checksum {float(g.sum()):.12e}\n" for r, g in enumerate(gathered)
                )
                + f"identical {same}\n"
            )
        if not same:
            logging.error("DDP ranks diverged: parameter checksums differ")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser(__doc__, "train-asr")
    p.add_argument(
        "--preset", choices=PRESETS, default="default", help="size preset (default: default)"
    )
    add_dataclass_args(p, ModelConfig, group_title="model")
    add_dataclass_args(p, TrainConfig, group_title="training")
    return p


def main(argv: list[str] | None = None) -> None:
    """``train-asr``: bad input (a missing or foreign file, a bad option value, an exp dir in
    use) ends with one line ``train-asr: error: ...`` and exit status 2."""
    args = get_parser().parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    with cli_errors("train-asr"):
        model_cfg = dataclass_from_args(ModelConfig, args, base=get_model_preset(args.preset))
        cfg = dataclass_from_args(TrainConfig, args, base=get_train_preset(args.preset))
        try:
            run(rank, world_size, model_cfg, cfg)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == "__main__":
    main()
