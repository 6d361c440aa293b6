"""Compare RNN-T decodes per set and per TTS voice, with a paired test over seeds and utterances.

Each system is one or more ``decode-asr`` output folders (``nbest-<set>.jsonl.gz``; several
folders = several training seeds of one system). Per set, and per voice of the set (from the
supervisions' ``custom["tts_engine"]`` / ``["tts_voice"]``: espeak-ng's variants are grouped as
one voice, any other engine's voices apart; ``--group engine``: per engine), it reports each
system's 1-best WER and rare-word WER (seed mean, pooled counts) and, against the first system,
the difference with its 95% interval and the share of resamples in which the system is *not*
better (``rescoring.metrics.paired_bootstrap_diff_seeds``: utterances resampled, and each
system's seeds with replacement). Decodes must cover the same utterances.

Run from the recipe folder.

Usage:
    python bench/asr_per_voice.py --manifest-dir data/manifests \
        --words data/lang/word_counts.txt --sets dev test_unseen_engine \
        --system control=exp/a/decode,exp/b/decode --system noise=exp/c/decode,exp/d/decode
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from _common import VOICE_GROUPS, voice_of, write_report

from common.wer import read_word_counts
from rescoring.metrics import UttCounts, corpus_metrics, paired_bootstrap_diff_seeds, utt_counts
from rescoring.nbest import read_nbest_jsonl

ALL = "(all)"


def read_voices(
    manifest_dir: Path, prefix: str, split: str, group: str = "family"
) -> dict[str, str]:
    """utterance id -> its voice group (``_common.voice_of``)."""
    path = manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    with gzip.open(path, "rt") as f:
        return {r["id"]: voice_of(r.get("custom") or {}, group) for r in map(json.loads, f)}


def read_1best(decode_dir: Path, split: str) -> dict[str, tuple[list[str], list[str]]]:
    """utterance id -> (reference words, 1-best words), read with the project's n-best reader
    (``rescoring.nbest.read_nbest_jsonl``: fields type-checked, a duplicated id is an error
    naming the file and lines)."""
    path = decode_dir / f"nbest-{split}.jsonl.gz"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    return {r.id: (r.ref.split(), r.hyps[0].words.split()) for r in read_nbest_jsonl(path)}


def _round(x: float | None) -> float | None:
    """Two decimals; None (a metric undefined for the group, e.g. no rare word) stays None."""
    return None if x is None else round(x, 2)


def parse_system(text: str) -> tuple[str, list[Path]]:
    name, sep, dirs = text.partition("=")
    if not sep or not name or not dirs:
        raise argparse.ArgumentTypeError(f"--system {text!r}: expected NAME=DIR[,DIR...]")
    return name, [Path(d) for d in dirs.split(",")]


def compare(systems, voices, counts, threshold, split, num_samples, seed) -> dict:
    """Per voice of ``split``: each system's metrics and its paired test against the first."""
    ids = sorted(voices)
    per_sys: dict[str, list[dict[str, tuple[list[str], list[str]]]]] = {}
    for name, dirs in systems:
        per_sys[name] = [read_1best(d, split) for d in dirs]
        for d, dec in zip(dirs, per_sys[name], strict=True):
            if sorted(dec) != ids:
                raise SystemExit(
                    f"{d}/nbest-{split}.jsonl.gz: {len(dec)} utterances, not the "
                    f"{len(ids)} of the {split} supervisions"
                )
    groups = {ALL: ids}
    for u in ids:
        groups.setdefault(voices[u], []).append(u)
    base = systems[0][0]
    out = {}
    for group, utts in groups.items():
        seeds: dict[str, list[list[UttCounts]]] = {
            name: [[utt_counts(*dec[u], counts, threshold) for u in utts] for dec in decodes]
            for name, decodes in per_sys.items()
        }
        row = {"utterances": len(utts)}
        for name, s in seeds.items():
            m = corpus_metrics([u for one in s for u in one])
            entry = {"wer": _round(m["wer"]), "rare_wer": _round(m["rare_wer"])}
            if len(s) > 1:
                entry["seeds_wer"] = [round(corpus_metrics(one)["wer"], 2) for one in s]
            if name != base:
                for metric in ("wer", "rare_wer"):
                    t = paired_bootstrap_diff_seeds(seeds[base], s, metric, num_samples, seed)
                    if t is not None:
                        entry[f"{metric}_vs_{base}"] = {
                            "diff": round(t["diff"], 2),
                            "ci95": [round(x, 2) for x in t["diff_ci95"]],
                            "p_not_better": round(t["p_b_better"], 3),
                        }
            row[name] = entry
        out[group] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--prefix", default="snips")
    p.add_argument("--words", type=Path, default=Path("data/lang/word_counts.txt"))
    p.add_argument("--rare-threshold", type=int, default=5, help="K: rare = seen < K times")
    p.add_argument("--sets", nargs="+", default=["dev", "test", "test_unseen_engine"])
    p.add_argument(
        "--system",
        type=parse_system,
        action="append",
        required=True,
        help="NAME=DIR[,DIR...]: decode folders of one system (one per seed); the first "
        "--system is the baseline of the tests",
    )
    p.add_argument(
        "--group",
        choices=VOICE_GROUPS,
        default="family",
        help="rows per voice (espeak-ng's variants as one: family), per engine:voice, or per "
        "engine",
    )
    p.add_argument("--bootstrap-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rows",
        choices=("voices", "systems"),
        default="voices",
        help="table layout: a row per (set, voice), or a row per system",
    )
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    names = [n for n, _ in args.system]
    if len(set(names)) != len(names):
        raise SystemExit(f"--system names must differ: {names}")
    counts = read_word_counts(args.words)
    sets = {}
    for split in args.sets:
        voices = read_voices(args.manifest_dir, args.prefix, split, args.group)
        sets[split] = compare(
            args.system,
            voices,
            counts,
            args.rare_threshold,
            split,
            args.bootstrap_samples,
            args.seed,
        )
    write_report(
        {
            "systems": {n: [str(d) for d in dirs] for n, dirs in args.system},
            "baseline": names[0],
            "rare_threshold": args.rare_threshold,
            "bootstrap_samples": args.bootstrap_samples,
            "sets": sets,
        },
        args.out,
    )
    print()
    print_table(sets, names, args.rows)


def print_table(sets: dict, names: list[str], rows: str) -> None:
    """Markdown: one row per (set, voice) and a column per system (``rows="voices"``), or one
    row per system and a column per (set, voice) (``"systems"``); a cell is the WER and, for
    every system but the first, its difference to the first and the test's p."""

    def cell(row: dict, name: str) -> str:
        e = row[name]
        text = f"{e['wer']:.2f}"
        t = e.get(f"wer_vs_{names[0]}")
        if t is not None:
            text += f" ({t['diff']:+.2f}, p={t['p_not_better']:.3f})"
        return text

    groups = [(split, group, row) for split, r in sets.items() for group, row in r.items()]
    if rows == "voices":
        print("| set | voice | utts | " + " | ".join(names) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for split, group, row in groups:
            cells = " | ".join(cell(row, n) for n in names)
            print(f"| {split} | {group} | {row['utterances']} | {cells} |")
        return
    head = [f"{split} {group} ({row['utterances']})" for split, group, row in groups]
    print("| system | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for n in names:
        print(f"| {n} | " + " | ".join(cell(row, n) for _, _, row in groups) + " |")


if __name__ == "__main__":
    main()
