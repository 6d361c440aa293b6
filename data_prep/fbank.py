"""Compute 80-dim log-mel filterbank features for the SNIPS manifests with Lhotse.

Features are stored with lilcom compression (``LilcomChunkyWriter``) next to the cut
manifests; a split whose cut manifest already exists is skipped (delete it to recompute).

Usage:
    compute-fbank --manifest-dir data/manifests --output-dir data/fbank --splits train dev test

OUTPUTS:
    data/fbank/snips_cuts_{split}.jsonl.gz   CutSet with features
    data/fbank/snips_feats_{split}.lca       lilcom feature archive
    data/fbank/.done                         written when every split is complete
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, load_manifest

from common.cli import run_cli
from common.io import InputError

# Each worker process must not spawn its own pool of torch threads on a 2-core machine.
torch.set_num_threads(1)
torch.set_num_interop_threads(1)


@dataclass
class FbankOptions:
    manifest_dir: Path = field(default=Path("data/manifests"), metadata={"help": "input manifests"})
    output_dir: Path = field(default=Path("data/fbank"), metadata={"help": "cuts + features"})
    prefix: str = field(default="snips", metadata={"help": "corpus prefix of the manifest names"})
    splits: tuple[str, ...] = field(default=("train", "dev", "test"), metadata={"help": "splits"})
    num_mel_bins: int = field(default=80, metadata={"help": "filterbank size"})
    num_jobs: int = field(default=2, metadata={"help": "feature extraction processes"})


def compute_fbank(opts: FbankOptions) -> dict[str, Path]:
    """Compute and store features for each split; returns the cut manifest paths."""
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    extractor = Fbank(FbankConfig(num_mel_bins=opts.num_mel_bins))
    out = {}
    for split in opts.splits:
        cuts_path = opts.output_dir / f"{opts.prefix}_cuts_{split}.jsonl.gz"
        out[split] = cuts_path
        if cuts_path.is_file():
            logging.info("%s exists: skipping split %s", cuts_path, split)
            continue
        rec_path = opts.manifest_dir / f"{opts.prefix}_recordings_{split}.jsonl.gz"
        sup_path = opts.manifest_dir / f"{opts.prefix}_supervisions_{split}.jsonl.gz"
        for p in (rec_path, sup_path):
            if not p.is_file():
                raise InputError(f"{p}: manifest not found (run prepare-snips first)")
        t0 = time.time()
        cuts = CutSet.from_manifests(
            recordings=load_manifest(rec_path), supervisions=load_manifest(sup_path)
        )
        cuts = cuts.compute_and_store_features(
            extractor=extractor,
            storage_path=opts.output_dir / f"{opts.prefix}_feats_{split}",
            num_jobs=opts.num_jobs,
            storage_type=LilcomChunkyWriter,
        )
        tmp = cuts_path.with_name(f".tmp.{cuts_path.name}")
        cuts.to_file(tmp)
        tmp.replace(cuts_path)
        hours = sum(c.duration for c in cuts) / 3600
        logging.info(
            "%s: %d cuts, %.2f h of audio, features in %.1f s",
            split,
            len(cuts),
            hours,
            time.time() - t0,
        )
    (opts.output_dir / ".done").touch()
    return out


def main(argv: list[str] | None = None) -> None:
    run_cli("compute-fbank", FbankOptions, compute_fbank, __doc__, argv)


if __name__ == "__main__":
    main()
