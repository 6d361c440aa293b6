"""Data side of ASR training and decoding: BPE tokenizer, Lhotse dataset, samplers.

With an SSL front-end (``ModelConfig.frontend``, :mod:`asr.frontend`) batches hold the cuts'
audio instead of their features: ``make_dataloader(..., waveform=True)`` gives ``feats`` (N, S)
16 kHz samples and ``feat_lens`` in samples (Lhotse's ``collate_audio``: the cuts of
``compute-fbank`` still reference their recordings).

Training with audio augmentation (``AsrDataset(augment=...)``, :mod:`asr.augment`) computes
the features on the fly from the augmented audio (the same Lhotse ``Fbank`` settings as the
stored features); without it the stored features are read as they are.

Speed perturbation from stored features (:class:`CutCopies`, ``train-asr --speed-cuts``):
``compute-fbank --speed-perturb`` stores the features of speed-perturbed copies of the train
cuts; each epoch then trains on, per utterance, the original or one of its copies, drawn
uniformly from a generator seeded by (seed, epoch, cut id), so a resumed run draws the same.
The draw happens before the sampler: an epoch has as many utterances as without copies, and
batches are bucketed by the drawn cuts' own durations (drawing per batch instead pads every
batch to its slowest copy: 7% more time per step, measured).
Other TTS renderings of the train utterances (``train-asr --render-cuts``, ids
``<id>_r<k>`` and their speed copies ``<id>_r<k>_sp<f>``) are copies of the same kind: drawn
with the speed copies, uniformly.

Usage:
    tok = Tokenizer("data/lang_bpe_128/bpe.model")
    cuts = load_cuts("data/fbank/snips_cuts_train.jsonl.gz")
    dl = make_dataloader(cuts, tok, max_duration=80, shuffle=True)
    for batch in dl:  # {"feats": (N, T, 80), "feat_lens", "targets": (N, U), "target_lens", ...}
    dl = make_decode_dataloader(cuts, tok, max_duration=120)  # longest first, for decoding
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import sentencepiece as spm
import torch
from lhotse import CutSet, load_manifest
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler, SpecAugment
from lhotse.dataset.collation import collate_audio, collate_features
from torch.utils.data import DataLoader, Dataset

from asr.augment import AudioAugment, AugmentSpec
from asr.config import ModelConfig
from asr.frontend import SAMPLE_RATE, ssl_frames
from common.io import InputError
from common.speed import RENDER_COPY_ID, SPEED_COPY_ID


class Tokenizer:
    """sentencepiece wrapper with the toolkit's id convention (0 = <blk>, 1 = <sos/eos>, 2 = <unk>)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: BPE model not found")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as e:  # sentencepiece's error for a non-model file
            raise InputError(f"{path}: not a sentencepiece model ({e})") from None
        self.path = path

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i > 2])

    def sp_pieces(self) -> list[str]:
        """Every piece of the model by id (``<blk>``, ``<sos/eos>``, ``<unk>`` included): two
        BPE models with the same pieces give the same ids."""
        return [self.sp.id_to_piece(i) for i in range(self.vocab_size)]

    def text_pieces(self) -> list[str]:
        """The piece of each token id ("" for the ids :meth:`decode` drops): token sequences
        whose pieces concatenate to the same string decode to the same text."""
        return ["" if i <= 2 else self.sp.id_to_piece(i) for i in range(self.vocab_size)]


def load_cuts(path: str | Path) -> CutSet:
    """Read a Lhotse CutSet manifest (``.jsonl`` / ``.jsonl.gz``) eagerly.

    Raises:
        InputError: naming ``path`` when it is missing, unreadable, not a CutSet (e.g. a
            SupervisionSet) or holds no cuts.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: CutSet not found")
    try:
        cuts = load_manifest(path)
    except Exception as e:  # lhotse raises JSON, gzip, EOF, key and value errors for bad files
        raise InputError(f"{path}: cannot read as a Lhotse CutSet ({type(e).__name__}: {e})") from e
    if not isinstance(cuts, CutSet):
        raise InputError(f"{path}: a {type(cuts).__name__}, not a CutSet (give the fbank cuts)")
    if len(cuts) == 0:
        raise InputError(f"{path}: CutSet holds no cuts")
    return cuts


def check_feature_dim(cuts: CutSet, dim: int, path: str | Path) -> None:
    """Raise :class:`InputError` naming ``path`` unless its first cut has ``dim``-dim features."""
    first = next(iter(cuts))
    if not first.has_features:
        raise InputError(f"{path}: cut {first.id} has no features (run compute-fbank first)")
    if first.num_features != dim:
        raise InputError(
            f"{path}: {first.num_features}-dim features but the model expects {dim} (--feature-dim)"
        )


def check_model_input(cuts: CutSet, model_cfg: ModelConfig, path: str | Path) -> None:
    """Raise :class:`InputError` naming ``path`` unless its cuts have what the model reads:
    features of ``feature_dim`` (fbank), or 16 kHz audio (an SSL front-end)."""
    if not model_cfg.waveform_input:
        check_feature_dim(cuts, model_cfg.feature_dim, path)
        return
    for c in cuts:
        if not c.has_recording:
            raise InputError(
                f"{path}: cut {c.id} has no recording; the {model_cfg.frontend} front-end reads "
                "the audio"
            )
        if c.sampling_rate != SAMPLE_RATE:
            raise InputError(
                f"{path}: cut {c.id} is {c.sampling_rate} Hz; the {model_cfg.frontend} "
                f"front-end takes {SAMPLE_RATE} Hz audio"
            )


def encoder_frames(cut, model_cfg: ModelConfig) -> int:
    """Encoder frames the model gives for ``cut`` (fbank frames subsampled, or SSL frames)."""
    if model_cfg.waveform_input:
        return int(ssl_frames(cut.num_samples, model_cfg.subsampling_factor // 2))
    return subsampled_frames(cut.num_frames, model_cfg.subsampling_factor)


def cut_text(cut) -> str:
    return " ".join(s.text for s in cut.supervisions if s.text)


def subsampled_frames(num_frames: int, factor: int) -> int:
    for _ in range(round(factor).bit_length() - 1):
        num_frames = (num_frames - 1) // 2
    return num_frames


def filter_cuts(cuts: CutSet, tok: Tokenizer, model_cfg: ModelConfig) -> CutSet:
    """Drop (with a counted warning) cuts with an empty transcript or too few encoder frames
    for their token sequence (CTC needs T' >= U)."""
    kept, empty, short = [], 0, 0
    for c in cuts:
        ids = tok.encode(cut_text(c))
        if not ids:
            empty += 1
            continue
        if encoder_frames(c, model_cfg) < len(ids):
            short += 1
            continue
        kept.append(c)
    if empty or short:
        logging.warning(
            "filter_cuts: dropped %d cuts with empty transcripts and %d too short for their "
            "labels (kept %d)",
            empty,
            short,
            len(kept),
        )
    return CutSet.from_cuts(kept)


class CutCopies:
    """Stored copies of the train cuts (original cut id -> copies): speed-perturbed copies
    (``--speed-cuts``) and other TTS renderings with their speed copies (``--render-cuts``),
    and the per-epoch draw of :meth:`choose`."""

    def __init__(self, copies: dict[str, list]) -> None:
        self.copies = copies

    @classmethod
    def load(
        cls,
        paths: tuple[Path, ...],
        train_cuts: CutSet,
        tok: Tokenizer,
        model_cfg: ModelConfig,
        render_paths: tuple[Path, ...] = (),
    ) -> CutCopies:
        """Read the copy CutSets of ``paths`` (speed copies, cut ids ``<orig cut
        id>_sp<factor>``) and ``render_paths`` (renderings, supervision ids ``<utterance>_r<k>``
        or ``<utterance>_r<k>_sp<factor>``) and match them to the cuts of ``train_cuts``.

        A copy whose original is not among ``train_cuts`` (left out by :func:`filter_cuts`, or
        not in the training subset) is skipped, counted and logged, and so is a copy
        :func:`filter_cuts` drops (too few frames for its labels at a faster speed).

        Raises:
            InputError: naming the file and cut: a cut id without the suffix of its kind, a
                copy given twice, a file none of whose cuts copies a train cut, or cuts
                without what the model reads (:func:`check_model_input`).
        """
        train_ids = {c.id for c in train_cuts}
        cut_of_utt = (
            {c.supervisions[0].id: c.id for c in train_cuts if c.supervisions}
            if render_paths
            else {}
        )
        copies: dict[str, list] = {}
        seen: dict[str, Path] = {}
        kinds = [(p, _SPEED_COPIES) for p in paths] + [(p, _RENDERINGS) for p in render_paths]
        for path, kind in kinds:
            what = kind.what
            cuts = load_cuts(path)
            check_model_input(cuts, model_cfg, path)
            orig_of, orphans, variants = {}, 0, Counter()
            for c in cuts:
                by_utt = kind.by_utterance and c.supervisions
                m = kind.pattern.match(c.supervisions[0].id if by_utt else c.id)
                if m is None:
                    raise InputError(f"{path}: cut {c.id} is not one of the {what} ({kind.hint}")
                if c.id in seen:
                    raise InputError(f"{path}: cut {c.id} given twice (also in {seen[c.id]})")
                seen[c.id] = path
                orig = cut_of_utt.get(m["orig"]) if kind.by_utterance else m["orig"]
                if orig not in train_ids:
                    orphans += 1
                    continue
                orig_of[c.id] = orig
                variants[_variant(m)] += 1
            if not orig_of:
                raise InputError(
                    f"{path}: none of its {len(cuts)} cuts is a copy of a train cut ({what} of "
                    "another train CutSet?)"
                )
            kept = filter_cuts(cuts.subset(cut_ids=list(orig_of)), tok, model_cfg)
            for c in kept:
                copies.setdefault(orig_of[c.id], []).append(c)
            logging.info(
                "%s: %d %s (%s) of train cuts%s",
                path,
                len(kept),
                what,
                "/".join(sorted(variants)),
                f"; {orphans} copies of cuts not in the train set skipped" if orphans else "",
            )
        return cls(copies)

    def choose(self, cuts: CutSet, seed: int, epoch: int) -> CutSet:
        """Per cut, in order, the original or one of its copies, uniformly; each a function of
        (seed, epoch, cut id) only."""
        key = f"asr.speed_copies:{seed}:{epoch}"
        return CutSet.from_cuts(
            random.Random(f"{key}:{c.id}").choice([c, *self.copies.get(c.id, ())]) for c in cuts
        )


class _CopyKind(NamedTuple):
    """A kind of stored copy :meth:`CutCopies.load` reads."""

    what: str  # plural, for messages
    pattern: re.Pattern  # of the id that names the original
    #: matched by supervision (utterance) id: a rendering is another recording, so its cut id
    #: is Lhotse's ``<recording id>-<n>``, not the original cut's id plus a suffix
    by_utterance: bool
    hint: str  # the end of the error message for an id that does not match


_SPEED_COPIES = _CopyKind(
    "speed-perturbed copies",
    SPEED_COPY_ID,
    False,
    "no _sp<factor> suffix): give the copies of compute-fbank --speed-perturb",
)
_RENDERINGS = _CopyKind(
    "renderings",
    RENDER_COPY_ID,
    True,
    "its supervision id has no _r<k> suffix): give the train_renders cuts of prepare-snips "
    "--train-renders",
)


def _variant(m: re.Match) -> str:
    """What a copy id's match names: ``x0.9`` (speed), ``r2`` or ``r2x0.9`` (rendering)."""
    groups = m.groupdict()
    render = f"r{groups['render']}" if groups.get("render") else ""
    return render + (f"x{groups['factor']}" if groups.get("factor") else "")


def load_train_cuts(
    train_path: Path, dev_path: Path, tok: Tokenizer, model_cfg: ModelConfig
) -> tuple[CutSet, CutSet]:
    """(train, dev) CutSets for training, checked: what the model reads (features of its
    dimension, or 16 kHz audio), train cuts the model can learn from (:func:`filter_cuts`; an
    error if none are left)."""
    train_cuts = load_cuts(train_path)
    check_model_input(train_cuts, model_cfg, train_path)
    n = len(train_cuts)
    train_cuts = filter_cuts(train_cuts, tok, model_cfg)
    if len(train_cuts) == 0:
        raise InputError(
            f"{train_path}: all {n} cuts dropped (empty transcript, or fewer encoder frames "
            "than BPE tokens)"
        )
    dev_cuts = load_cuts(dev_path)
    check_model_input(dev_cuts, model_cfg, dev_path)
    return train_cuts, dev_cuts


class AsrDataset(Dataset):
    """Maps a CutSampler batch (a CutSet) to padded tensors.

    Returns a dict: ``feats`` (N, T, C) float, ``feat_lens`` (N,), ``targets`` (N, U) int64
    (padded with 0), ``target_lens`` (N,), ``texts`` list[str], ``ids`` list[str]. With
    ``waveform``, ``feats`` is the audio (N, S) and ``feat_lens`` counts samples (SpecAugment,
    which masks fbank bins, is then refused).

    With ``augment`` (:class:`asr.augment.AudioAugment`; ``speed_perturb`` is the shorthand
    of speed factors 0.9/1.0/1.1) features are computed on the fly from the augmented audio
    (``num_mel_bins`` of them, the model's ``feature_dim``), and the dict gains
    ``aug_skipped``: ids of the utterances whose augmented audio or features were not finite;
    they stay in the batch with an empty label sequence, so the loss masks them out.
    """

    def __init__(
        self,
        tok: Tokenizer,
        spec_augment: SpecAugment | None = None,
        speed_perturb: bool = False,
        num_mel_bins: int = 80,
        waveform: bool = False,
        augment: AudioAugment | None = None,
    ) -> None:
        if waveform and spec_augment is not None:
            raise InputError("SpecAugment masks fbank features; waveform batches have none")
        self.tok = tok
        self.spec_augment = spec_augment
        self.waveform = waveform
        self.num_mel_bins = num_mel_bins
        if augment is None and speed_perturb:
            augment = AudioAugment(AugmentSpec(speed=(0.9, 1.0, 1.1)))
        self.augment = augment

    def __getitem__(self, cuts: CutSet) -> dict:
        cuts = cuts.sort_by_duration(ascending=False)
        skipped: list[int] = []
        if self.augment is not None:  # needs the cuts' audio: fbank is computed on the fly
            if self.waveform:
                feats, feat_lens, skipped = self.augment.audio(cuts)  # (N, S), (N,)
            else:
                feats, feat_lens, skipped = self.augment.features(cuts, self.num_mel_bins)
        elif self.waveform:
            feats, feat_lens = collate_audio(cuts)  # (N, S), (N,)
        else:
            feats, feat_lens = collate_features(cuts)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        texts = [cut_text(c) for c in cuts]
        ids = [[] if i in skipped else self.tok.encode(t) for i, t in enumerate(texts)]
        u = max((len(x) for x in ids), default=0)
        targets = torch.zeros(len(ids), max(u, 1), dtype=torch.long)
        for i, x in enumerate(ids):
            targets[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        utt_ids = [c.supervisions[0].id if c.supervisions else c.id for c in cuts]
        batch = {
            "feats": feats,
            "feat_lens": feat_lens,
            "targets": targets[:, :u] if u else targets[:, :0],
            "target_lens": torch.tensor([len(x) for x in ids], dtype=torch.long),
            "texts": texts,
            "ids": utt_ids,
        }
        if self.augment is not None:
            batch["aug_skipped"] = [utt_ids[i] for i in skipped]
        return batch


def make_sampler(
    cuts: CutSet,
    max_duration: float,
    shuffle: bool,
    num_buckets: int = 10,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
):
    if shuffle and num_buckets > 1:
        return DynamicBucketingSampler(
            cuts,
            max_duration=max_duration,
            shuffle=True,
            num_buckets=num_buckets,
            drop_last=True,
            world_size=world_size,
            rank=rank,
            seed=seed,
        )
    return SimpleCutSampler(
        cuts,
        max_duration=max_duration,
        shuffle=shuffle,
        drop_last=False,
        world_size=world_size,
        rank=rank,
        seed=seed,
    )


def make_decode_dataloader(
    cuts: CutSet,
    tok: Tokenizer,
    max_duration: float,
    waveform: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """Batches for decoding: the cuts sorted by duration, longest first, then batched in that
    order, so that utterances of similar length share a batch (icefall decodes from duration
    buckets for the same reason). A batched search runs every frame of its longest utterance;
    on the first 200 SNIPS dev utterances (120 s batches) sorting halves the frames it runs
    (1,054 -> 526) for the same 14,772 utterance-frames. The batches' order is not the
    manifest's: callers key results by utterance id (``decode-asr`` sorts its records). With
    ``ModelConfig.mask_padding`` (the default) the hypotheses do not depend on the batch; a
    checkpoint trained before that option sees the padding (asr/README.md). ``train-asr``'s
    dev checks (loss, greedy WER, ``--monitor-cuts``) use these batches too."""
    ordered = cuts.sort_by_duration(ascending=False)
    return make_dataloader(
        ordered, tok, max_duration, shuffle=False, waveform=waveform, num_workers=num_workers
    )


def make_dataloader(
    cuts: CutSet,
    tok: Tokenizer,
    max_duration: float,
    shuffle: bool,
    num_buckets: int = 10,
    spec_augment: SpecAugment | None = None,
    num_workers: int = 0,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    speed_perturb: bool = False,
    num_mel_bins: int = 80,
    waveform: bool = False,
    augment: AudioAugment | None = None,
) -> DataLoader:
    """Batches of :class:`AsrDataset`; ``num_mel_bins`` is the fbank size of the on-the-fly
    features of ``augment`` / ``speed_perturb`` (the model's ``feature_dim``); ``waveform``:
    audio batches for an SSL front-end (``ModelConfig.waveform_input``)."""
    sampler = make_sampler(cuts, max_duration, shuffle, num_buckets, world_size, rank, seed)
    return DataLoader(
        AsrDataset(tok, spec_augment, speed_perturb, num_mel_bins, waveform, augment),
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
    )
