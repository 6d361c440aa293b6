"""Compute log-mel filterbank features (``--num-mel-bins``, default 80) with Lhotse.

Features are stored with lilcom compression (``LilcomChunkyWriter``) next to the cut
manifests; a split whose cut manifest already exists is skipped (delete it to recompute).

Before any feature is computed, the audio of every cut of every split to compute is checked
(:mod:`data_prep.checks`): the file exists (a relative path is looked up from the current
folder), is readable, is not truncated, has the sampling rate, channel count and duration of
its recording manifest, and its rate is ``--sampling-rate``; float files must hold finite
samples only. Lhotse would silently drop a cut whose audio it cannot load; here any such cut
stops the run, naming the utterance and the file, unless ``--skip-bad-audio true``: then
the bad cuts are left out and listed in ``skipped-<split>.txt``. A split with no cut left is
always an error.

Speed perturbation computed once (``--speed-perturb 0.9 1.1``, as Kaldi and icefall recipes do
it): the features of speed-perturbed copies of the ``train`` split's cuts (Lhotse's
``cut.perturb_speed``: resampled, so pitch and duration change; cut and supervision ids get
Lhotse's ``_sp<factor>`` suffix) are stored too, one manifest per factor, next to the split's
own and never mixed into it. ``train-asr --speed-cuts`` draws, per utterance and epoch, the
original or one of the copies, so a training step reads stored features, as without
perturbation (``train-asr --aug-speed`` computes them on the fly instead: 12% more time per
step against 4-7% with the stored copies, measured; asr/README.md). 2 x 6,000 default-preset
train cuts take 85 s (2 jobs). Each copy manifest is skipped when it exists, like a split.
With the split ``train_renders`` in ``--splits`` (``prepare-snips --train-renders``: other TTS
renderings of the train utterances), its speed-perturbed copies are stored as well
(``<prefix>_cuts_train_renders_sp<f>``; cut ids ``<id>_r<k>_sp<f>``), for ``train-asr
--render-cuts``.

Usage:
    compute-fbank --manifest-dir data/manifests --output-dir data/fbank --splits train dev test

OUTPUTS:
    data/fbank/snips_cuts_{split}.jsonl.gz   CutSet with features
    data/fbank/snips_feats_{split}.lca       lilcom feature archive
    data/fbank/snips_cuts_train_sp{f}.jsonl.gz  speed-perturbed copies of train (--speed-perturb f)
    data/fbank/snips_cuts_train_renders_sp{f}.jsonl.gz  ... and of train_renders, when computed
    data/fbank/skipped-{split}.txt           "<cut id> TAB <recording id> TAB <reason>" per
                                             skipped cut (--skip-bad-audio only)
    data/fbank/.done                         written when every split is complete
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lhotse import (
    CutSet,
    Fbank,
    FbankConfig,
    LilcomChunkyWriter,
    RecordingSet,
    SupervisionSet,
)
from lhotse.qa import validate_recordings_and_supervisions

from common.cli import run_cli
from common.io import InputError, atomic_write, write_manifest
from common.speed import RENDER_SPLIT, SPEED_RANGE
from data_prep.checks import check_writable_dir, load_lhotse_manifest, recording_audio_problems

# Each worker process must not spawn its own pool of torch threads on a 2-core machine.
torch.set_num_threads(1)
torch.set_num_interop_threads(1)

#: How many bad cuts are listed in the log before the run stops (all are counted).
SHOWN_PROBLEMS = 20
#: the split whose speed-perturbed copies ``--speed-perturb`` stores; those of the other
#: renderings of its utterances (``RENDER_SPLIT``) are stored too when it is in ``--splits``
SPEED_SPLIT = "train"
SPEED_SPLITS = (SPEED_SPLIT, RENDER_SPLIT)


def speed_cuts_path(output_dir: Path, prefix: str, factor: float, split: str = SPEED_SPLIT) -> Path:
    """The cut manifest of the ``factor`` speed-perturbed copies of ``split``."""
    return Path(output_dir) / f"{prefix}_cuts_{split}_sp{factor:g}.jsonl.gz"


@dataclass
class FbankOptions:
    manifest_dir: Path = field(default=Path("data/manifests"), metadata={"help": "input manifests"})
    output_dir: Path = field(default=Path("data/fbank"), metadata={"help": "cuts + features"})
    prefix: str = field(default="snips", metadata={"help": "corpus prefix of the manifest names"})
    splits: tuple[str, ...] = field(default=("train", "dev", "test"), metadata={"help": "splits"})
    num_mel_bins: int = field(default=80, metadata={"help": "filterbank size"})
    sampling_rate: int = field(
        default=16000,
        metadata={"help": "sampling rate (Hz) of the features; audio at another rate is an error"},
    )
    num_jobs: int = field(default=2, metadata={"help": "feature extraction processes"})
    speed_perturb: tuple[float, ...] = field(
        default=(),
        metadata={
            "help": "also store the features of speed-perturbed copies of the train split "
            "(and of train_renders when in --splits), one manifest per factor (e.g. 0.9 1.1: "
            "<prefix>_cuts_train_sp0.9.jsonl.gz, ...), for train-asr --speed-cuts "
            "(--render-cuts); none = off"
        },
    )
    skip_bad_audio: bool = field(
        default=False,
        metadata={
            "help": "leave out cuts whose audio is missing, unreadable or does not match the "
            "manifest, listing them in <output-dir>/skipped-<split>.txt, instead of failing"
        },
    )


@dataclass
class _SplitInput:
    """A split to compute: its cuts, and the ones left out (cut id -> (recording id, reason))."""

    rec_path: Path
    cuts: CutSet
    skipped: dict[str, tuple[str, str]]


def _load_split(opts: FbankOptions, split: str) -> _SplitInput:
    """Load, validate and check the audio of one split; raises or records bad cuts."""
    rec_path = opts.manifest_dir / f"{opts.prefix}_recordings_{split}.jsonl.gz"
    sup_path = opts.manifest_dir / f"{opts.prefix}_supervisions_{split}.jsonl.gz"
    for p in (rec_path, sup_path):
        if not p.is_file():
            raise InputError(f"{p}: manifest not found (run prepare-snips first)")
    recordings = load_lhotse_manifest(rec_path, RecordingSet)
    supervisions = load_lhotse_manifest(sup_path, SupervisionSet)
    try:
        validate_recordings_and_supervisions(recordings, supervisions)
    except AssertionError as e:
        raise InputError(f"{sup_path}: Lhotse validation failed against {rec_path}: {e}") from None
    bad: dict[str, str] = {}
    for rec in recordings:
        problems = recording_audio_problems(rec, read_samples="float")
        if rec.sampling_rate != opts.sampling_rate:
            problems.append(
                f"sampled at {rec.sampling_rate} Hz, features are computed at "
                f"{opts.sampling_rate} Hz (--sampling-rate): resample the audio"
            )
        if problems:
            bad[rec.id] = "; ".join(problems)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    skipped = {c.id: (c.recording_id, bad[c.recording_id]) for c in cuts if c.recording_id in bad}
    lines = [
        f"{split}: utterance {rid} (cut {cid}): {reason}" for cid, (rid, reason) in skipped.items()
    ]
    if skipped and not opts.skip_bad_audio:
        for line in lines[:SHOWN_PROBLEMS]:
            logging.error("%s", line)
        more = f" (and {len(lines) - 1} more bad cuts, listed above)" if len(lines) > 1 else ""
        raise InputError(f"{rec_path}: {lines[0]}{more}; --skip-bad-audio true leaves them out")
    kept = CutSet.from_cuts(c for c in cuts if c.id not in skipped)
    if len(kept) == 0:
        raise InputError(
            f"{rec_path}: split {split} has no usable cut ({len(skipped)} of {len(cuts)} have "
            "bad audio, see above)"
        )
    for line in lines[:SHOWN_PROBLEMS]:
        logging.warning("skipping %s", line)
    return _SplitInput(rec_path, kept, skipped)


def compute_fbank(opts: FbankOptions) -> dict[str, Path]:
    """Compute and store features for each split; returns the cut manifest paths."""
    if opts.num_mel_bins <= 0:
        raise InputError(f"--num-mel-bins must be positive, got {opts.num_mel_bins}")
    lo, hi = SPEED_RANGE
    for f in opts.speed_perturb:
        if not lo <= f <= hi or f == 1.0:
            raise InputError(
                f"--speed-perturb factors must be in [{lo:g}, {hi:g}] and not 1 (the split "
                f"itself), got {f:g}"
            )
    if len(set(opts.speed_perturb)) != len(opts.speed_perturb):
        raise InputError(f"--speed-perturb: a factor is repeated in {list(opts.speed_perturb)}")
    if opts.speed_perturb and SPEED_SPLIT not in opts.splits:
        raise InputError(f"--speed-perturb copies the {SPEED_SPLIT} split, not in --splits")
    check_writable_dir(opts.output_dir, "--output-dir")
    extractor = Fbank(FbankConfig(num_mel_bins=opts.num_mel_bins, sampling_rate=opts.sampling_rate))
    out, todo = {}, {}
    # Every split's audio is checked before the first feature is computed.
    for split in opts.splits:
        cuts_path = opts.output_dir / f"{opts.prefix}_cuts_{split}.jsonl.gz"
        out[split] = cuts_path
        if cuts_path.is_file():
            logging.info("%s exists: skipping split %s", cuts_path, split)
            continue
        todo[split] = _load_split(opts, split)
    for split, inp in todo.items():
        t0 = time.time()
        cuts = inp.cuts.compute_and_store_features(
            extractor=extractor,
            storage_path=opts.output_dir / f"{opts.prefix}_feats_{split}",
            num_jobs=opts.num_jobs,
            storage_type=LilcomChunkyWriter,
        ).to_eager()
        # Lhotse leaves out, with a mere warning, a cut whose audio fails to load: the checks
        # above should have caught every such cut, but none may go missing silently.
        done = {c.id for c in cuts}
        lost = {c.id: c.recording_id for c in inp.cuts if c.id not in done}
        if lost and not opts.skip_bad_audio:
            raise InputError(
                f"{inp.rec_path}: Lhotse could not load the audio of {len(lost)} cuts "
                f"(utterances {', '.join(list(lost.values())[:5])}; see its warnings above); "
                "--skip-bad-audio true leaves them out"
            )
        skipped = {
            **inp.skipped,
            **{cid: (rid, "Lhotse could not load the audio") for cid, rid in lost.items()},
        }
        if len(cuts) == 0:
            raise InputError(f"{inp.rec_path}: split {split}: no cut left")
        skip_list = opts.output_dir / f"skipped-{split}.txt"
        if opts.skip_bad_audio:
            with atomic_write(skip_list) as f:
                f.write("".join(f"{c}\t{r}\t{why}\n" for c, (r, why) in sorted(skipped.items())))
            logging.info(
                "%s: %d cuts skipped for bad audio, listed in %s", split, len(skipped), skip_list
            )
        else:
            skip_list.unlink(missing_ok=True)  # from an earlier --skip-bad-audio run
        write_manifest(out[split], cuts)
        hours = sum(c.duration for c in cuts) / 3600
        logging.info(
            "%s: %d cuts, %.2f h of audio, features in %.1f s",
            split,
            len(cuts),
            hours,
            time.time() - t0,
        )
    if opts.speed_perturb:
        for split in SPEED_SPLITS:
            if split in out:
                _store_speed_copies(opts, extractor, split, out[split])
    (opts.output_dir / ".done").touch()
    return out


def _store_speed_copies(opts: FbankOptions, extractor: Fbank, split: str, split_cuts: Path) -> None:
    """Features of the ``--speed-perturb`` copies of ``split``'s (kept) cuts."""
    todo = {}
    for f in opts.speed_perturb:
        path = speed_cuts_path(opts.output_dir, opts.prefix, f, split)
        if path.is_file():
            logging.info("%s exists: skipping speed x%g", path, f)
        else:
            todo[f] = path
    if not todo:
        return
    source = load_lhotse_manifest(split_cuts, CutSet)
    for f, path in todo.items():
        t0 = time.time()
        copies = CutSet.from_cuts(c.drop_features().perturb_speed(f) for c in source)
        cuts = copies.compute_and_store_features(
            extractor=extractor,
            storage_path=opts.output_dir / f"{opts.prefix}_feats_{split}_sp{f:g}",
            num_jobs=opts.num_jobs,
            storage_type=LilcomChunkyWriter,
        ).to_eager()
        lost = sorted({c.id for c in copies} - {c.id for c in cuts})
        if lost:  # their originals loaded a moment ago: none may go missing silently
            raise InputError(
                f"{split_cuts}: Lhotse could not compute the speed x{f:g} features of "
                f"{len(lost)} cuts ({', '.join(lost[:5])}; see its warnings above)"
            )
        write_manifest(path, cuts)
        logging.info(
            "%s x%g: %d cuts, %.2f h of audio, features in %.1f s -> %s",
            split,
            f,
            len(cuts),
            sum(c.duration for c in cuts) / 3600,
            time.time() - t0,
            path,
        )


def main(argv: list[str] | None = None) -> None:
    run_cli("compute-fbank", FbankOptions, compute_fbank, __doc__, argv)


if __name__ == "__main__":
    main()
