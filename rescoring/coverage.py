"""Where the rare words go: for every rare reference token, is it in the slot lexicons, in the
biasing list of its utterance, in the n-best list, in the 1-best - per first pass.

The diagnostic behind the biasing targets: a rare word that no lexicon holds cannot be boosted;
one in the list but not in the beam was boosted too little; one in the beam but not in the
1-best is the second pass's to win. Each rare reference token (a word seen fewer than
``--threshold`` times in the ASR training transcripts, :func:`common.wer.is_rare`) falls in one
of three groups: in the utterance's biasing list (``--lists``, else ``global``), in some other
list of ``--lexicon-dir`` only, in no list. A token counts as found in a hypothesis when the
hypothesis holds the word at least as often as the reference does up to that occurrence
(bag-of-words, no alignment).

Usage:
    rare-word-coverage --gold data/manifests/snips_nlu_test.jsonl.gz \\
        --word-counts data/lang/word_counts.txt --threshold 5 --lexicon-dir data/lang/lexicons \\
        --lists exp/context/predicted.tsv \\
        --nbest unbiased=exp/asr/m/decode/nbest-test.jsonl.gz biased=exp/asr/m/decode_biased/nbest-test.jsonl.gz \\
        --out exp/rescore/coverage-test.md

OUTPUTS: ``--out`` (a markdown section for ``make-report --extra-md``) and ``<out>.json``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import run_cli
from common.io import InputError, atomic_write
from common.lexicon import read_context_map, read_lexicon
from common.wer import is_rare, read_word_counts
from rescoring.nbest import read_nbest_jsonl
from rescoring.score import read_gold

GROUPS = ("in its list", "in another list only", "in no list")


@dataclass
class CoverageConfig:
    gold: Path | None = field(default=None, metadata={"help": "supervision manifest; required"})
    word_counts: Path = field(
        default=Path("data/lang/word_counts.txt"), metadata={"help": "ASR training word counts"}
    )
    threshold: int = field(default=5, metadata={"help": "rare: fewer than this many in training"})
    lexicon_dir: Path = field(
        default=Path("data/lang/lexicons"), metadata={"help": "extract-slot-lexicon output"}
    )
    lists: Path | None = field(
        default=None,
        metadata={"help": "utt_id<TAB>list TSV (make-context-lists); default: global for all"},
    )
    nbest: list[str] = field(
        default_factory=list, metadata={"help": "NAME=nbest.jsonl.gz, one per first pass"}
    )
    out: Path = field(default=Path("coverage.md"), metadata={"help": "markdown output"})
    title: str = field(default="Rare words: lexicon, beam, 1-best", metadata={"help": "heading"})


def _words(lexicon: Path) -> set[str]:
    return {w for phrase, _ in read_lexicon(lexicon) for w in phrase.split()}


def coverage(cfg: CoverageConfig) -> dict:
    if cfg.gold is None or not cfg.nbest:
        raise InputError("--gold and at least one --nbest NAME=PATH are required")
    systems: dict[str, Path] = {}
    for item in cfg.nbest:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--nbest {item!r}: expected NAME=PATH")
        systems[name] = Path(path)
    if not cfg.lexicon_dir.is_dir():
        raise InputError(f"{cfg.lexicon_dir}: no such folder (--lexicon-dir)")
    gold = read_gold(cfg.gold)
    counts = read_word_counts(cfg.word_counts)
    lists = {p.stem: _words(p) for p in sorted(cfg.lexicon_dir.glob("*.txt"))}
    if "global" not in lists:
        raise InputError(f"{cfg.lexicon_dir}: no global.txt")
    any_list = set().union(*lists.values())
    utt_lists = {} if cfg.lists is None else read_context_map(cfg.lists, lists, utt_ids=None)
    nbests = {}
    for name, path in systems.items():
        recs = {r.id: r for r in read_nbest_jsonl(path)}
        missing = sorted(set(gold) - set(recs))
        if missing:
            raise InputError(f"{path}: no n-best list for utterance {missing[0]} of {cfg.gold}")
        nbests[name] = recs
    # group -> system -> [tokens, in 1-best, in n-best]
    table = {g: {s: [0, 0, 0] for s in systems} for g in GROUPS}
    for uid, g in gold.items():
        ref = g["text"].split()
        own = set().union(*(lists[n] for n in utt_lists.get(uid, ("global",))))
        seen: Counter = Counter()
        hyp_bags = {
            s: (
                Counter(recs[uid].hyps[0].words.split()) if recs[uid].hyps else Counter(),
                [Counter(h.words.split()) for h in recs[uid].hyps],
            )
            for s, recs in nbests.items()
        }
        for w in ref:
            seen[w] += 1
            if not is_rare(w, counts, cfg.threshold):
                continue
            group = GROUPS[0] if w in own else GROUPS[1] if w in any_list else GROUPS[2]
            for s, (one, bags) in hyp_bags.items():
                cell = table[group][s]
                cell[0] += 1
                cell[1] += one[w] >= seen[w]
                cell[2] += any(b[w] >= seen[w] for b in bags)
    result = {
        "gold": str(cfg.gold),
        "threshold": cfg.threshold,
        "lists": None if cfg.lists is None else str(cfg.lists),
        "systems": {s: str(p) for s, p in systems.items()},
        "groups": {
            g: {
                s: dict(zip(("tokens", "in_1best", "in_nbest"), c, strict=True))
                for s, c in v.items()
            }
            for g, v in table.items()
        },
    }
    total = sum(table[g][next(iter(systems))][0] for g in GROUPS)
    md = [f"## {cfg.title}", ""]
    md.append(
        f"{total} rare reference tokens of {cfg.gold} (fewer than {cfg.threshold} training "
        f"occurrences), by where the slot lexicons hold the word (the utterance's biasing list: "
        f"{'per utterance, ' + str(cfg.lists) if cfg.lists else 'global'}). Per first pass: the share "
        "found in its 1-best and anywhere in its n-best list (bag of words)."
    )
    md += [
        "",
        "| rare tokens | count | "
        + " | ".join(f"{s}: 1-best | {s}: n-best" for s in systems)
        + " |",
    ]
    md.append("|---|---|" + "---|---|" * len(systems))
    for g in (*GROUPS, "all"):
        cells = (
            [[sum(table[x][s][i] for x in GROUPS) for i in range(3)] for s in systems]
            if g == "all"
            else [table[g][s] for s in systems]
        )
        n = cells[0][0]
        pct = " | ".join(
            f"{100.0 * c[1] / max(n, 1):.1f}% | {100.0 * c[2] / max(n, 1):.1f}%" for c in cells
        )
        md.append(f"| {g} | {n} ({100.0 * n / max(total, 1):.1f}%) | {pct} |")
    md.append("")
    with atomic_write(cfg.out) as f:
        f.write("\n".join(md) + "\n")
    with atomic_write(Path(f"{cfg.out}.json")) as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    logging.info("%s: %d rare tokens", cfg.out, total)
    return result


def main(argv: list[str] | None = None) -> None:
    run_cli("rare-word-coverage", CoverageConfig, coverage, __doc__, argv)


if __name__ == "__main__":
    main()
