"""Train a Conformer RNN-T (torchaudio) on Lhotse fbank cuts, with a CTC auxiliary loss.

Usage:
    train-asr --preset default --exp-dir exp/asr/conformer_rnnt \\
        --train-cuts data/fbank/snips_cuts_train.jsonl.gz \\
        --dev-cuts data/fbank/snips_cuts_dev.jsonl.gz --bpe-model data/lang_bpe_128/bpe.model
    torchrun --nproc-per-node 2 -m asr.train --preset tiny ...     # DDP (gloo on CPU)

Outputs in ``exp-dir``: ``config.json``, ``cmd.sh``, ``epoch-N.pt`` (model, optimizer,
scheduler, sampler, RNG, train state, config, env), ``log/train.csv`` (step, lr, losses),
``log/valid.csv`` (dev loss and greedy WER), ``log/log-train.txt`` (``ddp-sync.txt`` under DDP).

The loop, resume and re-run rules are those of ``common/trainer.py``, shared with train-lm. An
existing ``epoch-N.pt`` is resumed automatically (``--resume false`` to refuse); every epoch
reseeds all RNGs with ``seed + epoch``, so resuming from an epoch boundary reproduces the
uninterrupted run up to floating-point nondeterminism of multithreaded CPU/GPU kernels. A
``--max-minutes`` or ``--max-steps`` stop saves a *partial* epoch checkpoint; resuming it
fast-forwards the Lhotse sampler to the same batch and restores the RNG stream, so the
continued run equals an uninterrupted one (with ``--num-workers 0``). On resume, CSV rows
logged after the resumed checkpoint's step (by a run killed before its next checkpoint) are
dropped, so the steps in the logs stay unique and increasing. A re-run with nothing left to
train (all ``--num-epochs`` done, ``--max-steps`` reached, the ``--max-minutes`` budget spent:
the budgets count earlier runs) logs "Training already finished ...: nothing to do" and changes
no checkpoint; raise the limit to continue.

The exp dir is locked while training (``.lock``; rank 0 holds it under DDP): a second
``train-asr`` on it stops at once, naming the pid of the first. Bad input (a missing, empty or
foreign CutSet or BPE model, features of another dimension than ``--feature-dim``, a
``--vocab-size`` other than the BPE model's, a corrupt or foreign checkpoint in the exp dir, an
unwritable exp dir, a bad option value) stops before training with one line
``train-asr: error: ...`` naming the file or option, exit status 2.

Front-ends (``--frontend``): ``fbank`` (the cuts' features) or a self-supervised model on the
cuts' 16 kHz audio, ``wav2vec2_base`` / ``hubert_base`` (:mod:`asr.frontend`), frozen
(``--frontend-freeze true``) or fine-tuned, its weights from ``--frontend-checkpoint`` (a
torchaudio state dict; without it the SSL model is random and a WARNING says so). With an SSL
front-end there is no CMVN and no SpecAugment (it masks fbank bins; the preset turns it off and
``--spec-augment true`` is an error); audio augmentation applies to the audio as it is.

On-the-fly audio augmentation (:mod:`asr.augment`, Lhotse's transforms; each off by default):
``--aug-speed 0.9 1.0 1.1`` (``--speed-perturb`` is its shorthand), ``--aug-reverb-prob``
(synthetic RIR), ``--aug-noise-prob`` with ``--aug-noise-types white pink babble`` and
``--aug-snr MIN MAX``, ``--aug-volume-prob`` with ``--aug-volume-db MIN MAX``,
``--aug-narrowband-prob`` (8 kHz mu-law). With any of them on, train features are computed
from the augmented audio (dev never is); seeded per batch by (seed, epoch, cut ids), so a
resumed run sees the same augmentation. An utterance whose augmented audio or features are not
finite is skipped (masked out of its batch, counted, warned by cut id).

Speed perturbation from stored features (``--speed-cuts``, :class:`asr.data.CutCopies`): the
copies ``compute-fbank --speed-perturb 0.9 1.1`` stored; per utterance and epoch the original
or one copy is drawn uniformly before the sampler buckets the epoch by duration, so a step reads
stored features: 4-7% more time per step than without perturbation, against 12% for
``--aug-speed``, which computes the features on the fly (measured on the default data,
asr/README.md). An epoch still has one draw per training utterance.

    compute-fbank --splits train dev test --speed-perturb 0.9 1.1
    train-asr ... --speed-cuts data/fbank/snips_cuts_train_sp0.9.jsonl.gz \\
        data/fbank/snips_cuts_train_sp1.1.jsonl.gz

Other TTS renderings of the train utterances (``--render-cuts``; ``prepare-snips
--train-renders 2``: each sentence also spoken by a voice of another engine) join the same
draw: per utterance and epoch one of (original, its speed copies, its renderings and their
speed copies), uniformly. The paired text is unchanged; an epoch has as many utterances.

    train-asr ... --speed-cuts ... --render-cuts data/fbank/snips_cuts_train_renders.jsonl.gz \\
        data/fbank/snips_cuts_train_renders_sp0.9.jsonl.gz ...

    train-asr --preset default --frontend wav2vec2_base --frontend-checkpoint w2v2_base.pt \\
        --frontend-layers 6 ...

Bad data never stops a run: cuts with an empty transcript or fewer encoder frames than tokens
are dropped up front (counted warning; an error if none are left); utterances with a
non-finite loss are masked out of the batch, and a step whose gradient is non-finite is skipped
(counted warning).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import random
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from asr.augment import AudioAugment, AugmentSpec
from asr.config import PRESETS, ModelConfig, TrainConfig, get_model_preset, get_train_preset
from asr.data import (
    CutCopies,
    Tokenizer,
    check_model_input,
    load_cuts,
    load_train_cuts,
    make_dataloader,
    make_decode_dataloader,
)
from asr.model import Transducer, build_model, num_params
from asr.objective import TransducerForward, compute_loss, greedy_wer, validate
from common.checkpoint import CheckpointError
from common.cli import TrainCli
from common.distributed import end_distributed, init_distributed
from common.env import env_info
from common.io import InputError
from common.malloc import set_mmap_threshold
from common.trainer import (
    LoopOptions,
    MetricsLog,
    Resume,
    StepOutput,
    Trainer,
    config_dict,
    find_resume,
    training_session,
)


def noam_factor(step: int, warmup_steps: int, max_steps: int = 0, cooldown_steps: int = 0) -> float:
    """The LR multiplier of 0-based ``step``: linear warm-up, inverse-square-root decay (Vaswani
    et al., 2017, "Noam") and, with ``cooldown_steps``, a linear fall to 0 over the last
    ``cooldown_steps`` steps before ``max_steps`` (the last step keeps ``1 / cooldown_steps``)."""
    w = max(1, warmup_steps)
    f = min((step + 1) / w, math.sqrt(w / (step + 1)))
    if cooldown_steps:
        f *= min(1.0, max(0.0, (max_steps - step) / cooldown_steps))
    return f


class NoamScheduler(torch.optim.lr_scheduler.LambdaLR):
    """:func:`noam_factor` per step; the state is the step count only, so a checkpoint of a run
    without a cool-down resumes into one with it (and the other way round)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        max_steps: int = 0,
        cooldown_steps: int = 0,
    ) -> None:
        super().__init__(
            optimizer, lambda s: noam_factor(s, warmup_steps, max_steps, cooldown_steps)
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def parse_monitor_cuts(items: tuple[str, ...]) -> list[tuple[str, Path]]:
    """``--monitor-cuts NAME=CUTS ...`` as (name, path) pairs.

    Raises:
        InputError: an item without ``=``, an empty name or path, or a name given twice.
    """
    out: list[tuple[str, Path]] = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(
                f"--monitor-cuts {item!r}: expected NAME=CUTS (e.g. unseen=cuts.jsonl.gz)"
            )
        if any(n == name.strip() for n, _ in out):
            raise InputError(f"--monitor-cuts: the name {name.strip()!r} is given twice")
        out.append((name.strip(), Path(path.strip())))
    return out


class AsrTrainer(Trainer):
    """``train-asr``'s parts of the loop: Lhotse samplers (sharded by rank), the RNN-T + CTC
    loss through DDP, the Noam LR schedule per step, dev loss and greedy WER."""

    train_log_fields = ("rnnt", "ctc")
    dev_log_fields = ("dev_loss", "dev_greedy_wer")

    def __init__(
        self,
        model: Transducer,
        cfg: TrainConfig,
        tok: Tokenizer,
        device: torch.device,
        *,
        command: list[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg, self.tok, self.device = cfg, tok, device
        # a frozen SSL front-end's weights are left out: no optimizer state, no weight decay
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=cfg.peak_lr,
            weight_decay=cfg.weight_decay,
        )
        self.scheduler = NoamScheduler(
            optimizer, cfg.warmup_steps, cfg.max_steps, cfg.lr_cooldown_steps
        )
        opts = LoopOptions(
            num_epochs=cfg.num_epochs,
            grad_clip=cfg.grad_clip,
            log_interval=cfg.log_interval,
            **cfg.budget_options(),
        )
        extra = {"model": config_dict(model.cfg), "world_size": world_size}
        super().__init__(
            model,
            optimizer,
            opts,
            cfg.exp_dir,
            config=cfg,
            config_extra=extra,
            command=command,
            rank=rank,
            world_size=world_size,
        )
        self.bad_utts = 0  # utterances masked out of their batch
        self.aug_skipped = 0  # utterances whose augmented audio or features were not finite
        self.augment_spec = AugmentSpec.from_train_config(cfg)
        self.sampler_state: dict | None = None  # of a partial epoch, to fast-forward to
        self._epoch_batches: int | None = None
        self.train_dl: Any = None

    def prepare(self, resumed: bool) -> None:
        cfg, model = self.cfg, self.model
        self.train_cuts, dev_cuts = load_train_cuts(
            cfg.train_cuts, cfg.dev_cuts, self.tok, model.cfg
        )
        self.speed_copies = None
        if cfg.speed_cuts or cfg.render_cuts:  # stored copies: speed-perturbed, other voices
            self.speed_copies = CutCopies.load(
                tuple(cfg.speed_cuts),
                self.train_cuts,
                self.tok,
                model.cfg,
                render_paths=tuple(cfg.render_cuts),
            )
        spec = self.augment_spec
        start = (
            f" from epoch {cfg.aug_from_epoch}" if spec.active and cfg.aug_from_epoch > 1 else ""
        )
        logging.info("audio augmentation of train batches%s: %s", start, spec.describe())
        if spec.active:
            check_augmentable(self.train_cuts, cfg.train_cuts, spec)
        if not resumed and not model.cfg.waveform_input:
            # Lhotse's global stats of the first --cmvn-cuts cuts (float64, Chan et al.'s
            # pairwise update): equal to the bit in float32 to our sum/sum-of-squares version
            # it replaced (tests/asr/test_train.py). It reads each cut's whole feature matrix,
            # which is the cut's own: compute-fbank stores one per cut.
            stats = self.train_cuts.compute_global_feature_stats(max_cuts=cfg.cmvn_cuts)
            model.set_cmvn(
                torch.from_numpy(stats["norm_means"]).float(),
                torch.from_numpy(stats["norm_stds"]).float(),
            )
        model.to(self.device)
        for s in self.optimizer.state.values():
            for k, v in s.items():
                if torch.is_tensor(v) and k != "step":
                    s[k] = v.to(self.device)
        fwd = TransducerForward(model)
        cuda = self.device.type == "cuda"
        self.fwd = (
            DDP(fwd, device_ids=[self.device.index] if cuda else None)
            if self.world_size > 1
            else fwd
        )
        waveform = model.cfg.waveform_input
        # the checks batch by duration, longest first, as decode-asr does: fewer padded frames
        # (the greedy search runs every frame of a batch's longest utterance); with
        # --mask-padding their values do not depend on the batches
        self.valid_dl = make_decode_dataloader(
            dev_cuts, self.tok, cfg.max_duration, waveform=waveform, num_workers=cfg.num_workers
        )
        self.wer_dl = make_decode_dataloader(
            dev_cuts.subset(first=min(cfg.valid_wer_cuts, len(dev_cuts))),
            self.tok,
            cfg.max_duration,
            waveform=waveform,
        )
        self.monitor_dls = {}  # name -> greedy-WER loader (--monitor-cuts)
        for name, path in parse_monitor_cuts(cfg.monitor_cuts):
            cuts = load_cuts(path)
            check_model_input(cuts, model.cfg, path)
            self.monitor_dls[name] = make_decode_dataloader(
                cuts.subset(first=min(cfg.valid_wer_cuts, len(cuts))),
                self.tok,
                cfg.max_duration,
                waveform=waveform,
            )
        self.monitor_log, self.monitor_step = None, -1
        if self.monitor_dls and self.is_main:  # rows after the resumed step: dropped
            self.monitor_log = MetricsLog(
                self.exp_dir / "log/monitor.csv",
                ["step", "epoch", "set", "greedy_wer", "elapsed_s"],
                keep_through_step=self.state.step,
            )
            self.extra_logs.append(self.monitor_log)  # closed when fit() ends

    def start_epoch(self, epoch: int) -> None:
        seed_everything(self.cfg.seed + epoch)

    def train_batches(self, epoch: int, skip: int) -> Any:
        cfg = self.cfg
        augment = None
        if self.augment_spec.active and epoch >= cfg.aug_from_epoch:
            if epoch == cfg.aug_from_epoch > 1:
                logging.info("epoch %d: audio augmentation of train batches starts", epoch)
            # seeded per batch from (seed, epoch, cut ids)
            augment = AudioAugment(
                self.augment_spec, seed=cfg.seed, epoch=epoch, train_cuts=self.train_cuts
            )
        spec = None
        if cfg.spec_augment and epoch >= cfg.spec_aug_from_epoch:
            from lhotse.dataset import SpecAugment

            spec = SpecAugment(
                time_warp_factor=cfg.spec_time_warp_factor,
                num_frame_masks=cfg.spec_num_frame_masks,
                frames_mask_size=cfg.spec_frames_mask_size,
                features_mask_size=cfg.spec_features_mask_size,
                num_feature_masks=cfg.spec_num_feature_masks,
            )
        train_cuts = self.train_cuts  # or, per utterance, a stored speed-perturbed copy
        if self.speed_copies is not None:  # drawn before the sampler buckets by duration
            train_cuts = self.speed_copies.choose(train_cuts, cfg.seed, epoch)
        self.train_dl = make_dataloader(
            train_cuts,
            self.tok,
            cfg.max_duration,
            shuffle=True,
            num_buckets=cfg.num_buckets,
            spec_augment=spec,
            num_workers=cfg.num_workers,
            world_size=self.world_size,
            rank=self.rank,
            seed=cfg.seed,
            num_mel_bins=self.model.cfg.feature_dim,
            waveform=self.model.cfg.waveform_input,
            augment=augment,
        )
        self.train_dl.sampler.set_epoch(epoch)
        # the epoch's batch count for the progress bar, drawn from a copy of the fresh sampler
        # (its own seeded RNG; the real sampler is untouched): 0.8 s for the default 6,000 cuts
        self._epoch_batches = sum(1 for _ in copy.deepcopy(self.train_dl.sampler))
        if skip:  # the sampler state of the partial epoch's checkpoint holds its position
            if self.sampler_state is None:
                raise CheckpointError(f"{self.exp_dir}: partial epoch {epoch} without sampler")
            self.train_dl.sampler.load_state_dict(self.sampler_state)
        self.sampler_state = None
        return self.train_dl

    def batches_per_epoch(self, epoch: int) -> int | None:
        """This rank's batches of ``epoch`` (counted by :meth:`train_batches`)."""
        return self._epoch_batches

    def train_step(self, batch: dict) -> StepOutput:
        cuda = self.device.type == "cuda"
        amp = self.cfg.use_amp if cuda else self.cfg.cpu_bf16
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            loss, st = compute_loss(self.fwd, batch, self.cfg, self.device)
        aug_skipped = batch.get("aug_skipped", ())
        if aug_skipped:  # masked by compute_loss too (empty labels): counted here only
            self.aug_skipped += len(aug_skipped)
            logging.warning(
                "step %d: skipped %s (non-finite after audio augmentation); %d so far",
                self.state.step,
                ", ".join(aug_skipped),
                self.aug_skipped,
            )
        bad = int(st["bad_utts"]) - len(aug_skipped)
        if bad:
            self.bad_utts += bad
            logging.warning(
                "step %d: masked %d bad utterance(s) (empty/too short/non-finite loss); %d so far",
                self.state.step,
                bad,
                self.bad_utts,
            )
        tokens = st["tokens"]
        return StepOutput(loss, {"rnnt": (st["rnnt"], tokens), "ctc": (st["ctc"], tokens)})

    def after_step(self) -> None:
        self.scheduler.step()
        st, cfg = self.state, self.cfg
        if not cfg.valid_interval or st.step % cfg.valid_interval:
            return
        if self.is_main:
            wer = greedy_wer(self.model, self.wer_dl, self.tok, self.device)
            logging.info(
                "step %d: dev greedy WER %.2f%% (%d cuts)", st.step, wer, cfg.valid_wer_cuts
            )
            assert self.dev_log is not None
            self.dev_log.write(
                step=st.step,
                epoch=st.epoch,
                lr=self.lr(),
                dev_greedy_wer=wer,
                elapsed_s=round(self.elapsed(), 1),
            )
            self.monitor()
        if self.world_size > 1:
            dist.barrier()

    def monitor(self) -> None:
        """Greedy WER of each ``--monitor-cuts`` set, logged (rank 0; once per step)."""
        st = self.state
        if not self.monitor_dls or self.monitor_step == st.step:
            return
        self.monitor_step = st.step
        for name, dl in self.monitor_dls.items():
            wer = greedy_wer(self.model, dl, self.tok, self.device)
            logging.info("step %d: %s greedy WER %.2f%% (monitor)", st.step, name, wer)
            assert self.monitor_log is not None
            self.monitor_log.write(
                step=st.step,
                epoch=st.epoch,
                set=name,
                greedy_wer=wer,
                elapsed_s=round(self.elapsed(), 1),
            )

    def evaluate(self) -> dict[str, float | None]:
        self.monitor()  # at the epoch end too (the check every --valid-interval steps may be off)
        return {
            "dev_loss": validate(self.model, self.valid_dl, self.cfg, self.device),
            "dev_greedy_wer": greedy_wer(self.model, self.wer_dl, self.tok, self.device),
        }

    def state_extra(self) -> dict[str, Any]:
        return {
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.train_dl.sampler.state_dict() if self.train_dl is not None else None,
            "config": {"model": config_dict(self.model.cfg), "train": config_dict(self.cfg)},
            "bad_utts": self.bad_utts,
            "aug_skipped": self.aug_skipped,
        }

    def load_state_extra(self, ckpt: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler_state = ckpt["sampler"]
        self.bad_utts = int(ckpt["bad_utts"])
        self.aug_skipped = int(ckpt.get("aug_skipped", 0))  # absent before augmentation

    def on_end(self) -> None:
        if self.bad_utts:
            logging.warning("%d utterances were masked out of their batches", self.bad_utts)
        if self.aug_skipped:
            logging.warning(
                "%d utterances were skipped for non-finite audio augmentation", self.aug_skipped
            )


def check_augmentable(cuts, path: Path, spec: AugmentSpec) -> None:
    """Raise :class:`InputError` naming ``path`` unless every cut has a recording (audio
    augmentation reads the audio) and babble has another utterance to draw from."""
    for c in cuts:
        if not c.has_recording:
            raise InputError(
                f"{path}: cut {c.id} has no recording; audio augmentation (--aug-*, "
                "--speed-perturb) reads the audio"
            )
    if spec.noise_prob > 0 and "babble" in spec.noise_types and len(cuts) < 2:
        raise InputError(f"{path}: babble noise (--aug-noise-types) needs at least 2 train cuts")


def resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(cfg.device)


def _check_resume(resume: Resume | None, model_cfg: ModelConfig) -> None:
    """Raises :class:`CheckpointError` naming the exp dir's checkpoint if it is not a
    ``train-asr`` one or holds another model config."""
    if resume is not None:
        saved = ModelConfig.from_checkpoint(resume.ckpt, resume.path)
        if saved != model_cfg:
            raise CheckpointError(f"{resume.path}: model config {saved} differs from {model_cfg}")


def check_frontend_options(model_cfg: ModelConfig, cfg: TrainConfig) -> None:
    """Raises :class:`InputError` for training options the front-end cannot honour."""
    if model_cfg.waveform_input:
        if cfg.spec_augment:
            raise InputError(
                f"--spec-augment masks fbank features; with --frontend {model_cfg.frontend} "
                "give --spec-augment false"
            )
        if cfg.frontend_checkpoint is not None and not Path(cfg.frontend_checkpoint).is_file():
            raise InputError(f"--frontend-checkpoint {cfg.frontend_checkpoint}: no such file")
    elif cfg.frontend_checkpoint is not None:
        raise InputError("--frontend-checkpoint needs an SSL --frontend (not fbank)")


def init_frontend(model: Transducer, cfg: TrainConfig) -> None:
    """A new model's SSL front-end: weights from ``--frontend-checkpoint``, else a warning."""
    frontend = model.ssl_frontend
    if frontend is None:
        return
    if cfg.frontend_checkpoint is not None:
        frontend.load_pretrained(cfg.frontend_checkpoint)
    else:
        logging.warning(
            "%s front-end is randomly initialised, i.e. UNTRAINED: give --frontend-checkpoint "
            "(a torchaudio state dict, see asr/frontend.py) for pre-trained weights",
            frontend.name,
        )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logging.info(
        "%s front-end (%d layers, %s): %d of %d parameters trainable",
        frontend.name,
        frontend.num_layers,
        "frozen" if frontend.freeze else "fine-tuned",
        trainable,
        num_params(model),
    )


def run(
    rank: int,
    world_size: int,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    command: list[str] | None = None,
) -> Path | None:
    """Train (rank ``rank`` of ``world_size``); returns the last checkpoint path.

    Raises:
        InputError: a bad option value or input file, or an exp dir in use (rank 0 holds
            :func:`common.io.dir_lock` on it for the whole run).
        CheckpointError: a checkpoint in the exp dir that is corrupt or of another model.
    """
    cfg.validate()
    model_cfg.validate()
    check_frontend_options(model_cfg, cfg)
    with training_session(cfg.exp_dir, rank, world_size):
        device = resolve_device(cfg, int(os.environ.get("LOCAL_RANK", rank)))
        if world_size > 1 and not dist.is_initialized():
            init_distributed("nccl" if device.type == "cuda" else "gloo")
        if cfg.num_threads > 0 and device.type == "cpu":
            torch.set_num_threads(cfg.num_threads)
        set_mmap_threshold(cfg.malloc_mmap_threshold_mb)
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
        resume = find_resume(cfg.exp_dir, cfg.resume)
        _check_resume(resume, model_cfg)
        seed_everything(cfg.seed)
        model = build_model(model_cfg)
        logging.info("model parameters: %d", num_params(model))
        if resume is None:  # a resumed run has the front-end's weights in its checkpoint
            init_frontend(model, cfg)
        trainer = AsrTrainer(
            model, cfg, tok, device, command=command, rank=rank, world_size=world_size
        )
        return trainer.fit(resume)


def _run_from_env(model_cfg: ModelConfig, cfg: TrainConfig, command: list[str]) -> Path | None:
    """``run`` with the rank and world size torchrun puts in the environment."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        return run(int(os.environ.get("RANK", "0")), world_size, model_cfg, cfg, command)
    except BaseException as e:
        if dist.is_initialized():  # the frames' locals hold the DDP model, which holds the group
            traceback.clear_frames(e.__traceback__)
        raise
    finally:
        if dist.is_initialized():  # freed here, not while Python exits (common/distributed.py)
            end_distributed()


def preset_configs(name: str, args: Any) -> tuple[ModelConfig, TrainConfig]:
    """The preset's configs; with an SSL ``--frontend`` SpecAugment is off (it masks fbank)."""
    model_cfg, train_cfg = get_model_preset(name), get_train_preset(name)
    if (getattr(args, "frontend", None) or model_cfg.frontend) != "fbank":
        train_cfg = dataclasses.replace(train_cfg, spec_augment=False)
    return model_cfg, train_cfg


CLI = TrainCli(
    prog="train-asr",
    doc=__doc__,
    train_cls=TrainConfig,
    model_cls=ModelConfig,
    presets=PRESETS,
    preset_configs=preset_configs,
)


def main(argv: list[str] | None = None) -> None:
    """``train-asr``: bad input (a missing or foreign file, a bad option value, an exp dir in
    use) ends with one line ``train-asr: error: ...`` and exit status 2."""
    CLI.main(_run_from_env, argv)


if __name__ == "__main__":
    main()
