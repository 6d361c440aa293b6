"""Score 1-best hypotheses: WER, rare/common-word WER, per-intent WER, SLU, bootstrap intervals.

Definitions are in :mod:`rescoring.metrics`. References, gold intents and slots come from the
NLU supervision manifest of the set.

Usage:
    score-wer --hyps exp/rescore/multitask_rwm/onebest-test.jsonl.gz \\
        --gold data/manifests/snips_nlu_test.jsonl.gz --word-counts data/lang/word_counts.txt \\
        --threshold 5 --out-dir exp/rescore/multitask_rwm --set-name test --system multitask_rwm

``--hyps`` is a ``onebest-*.jsonl.gz`` of ``rescore-nbest`` or a Kaldi-style text file
(``utt_id word word ...``; no NLU).

OUTPUTS (in --out-dir; icefall layout):
    recogs-{set}-{system}.txt, errs-{set}-{system}.txt, wer-summary-{set}-{system}.txt
    rare-wer-{set}-{system}.txt   rare / common-word WER, rare-token share, per-intent WER
    metrics-{set}.json            every metric with its 95% bootstrap interval
    per-utt-{set}.jsonl.gz        per-utterance counts (for paired bootstrap tests)
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asr.wer import write_results
from common.cli import run_cli
from common.io import InputError, atomic_write, read_jsonl, read_kaldi_text, write_jsonl
from data_prep.rare_words import read_word_counts
from rescoring.metrics import (
    METRICS,
    UttCounts,
    add_slu,
    bootstrap_ci,
    corpus_metrics,
    per_group_wer,
    utt_counts,
)


def read_gold(path: Path) -> dict[str, dict]:
    """``id -> {"text", "intent", "slots"}`` from a supervision manifest."""
    gold = {}
    for lineno, obj in read_jsonl(path):
        if "id" not in obj or "text" not in obj:
            raise InputError(f"{path}:{lineno}: a supervision needs 'id' and 'text'")
        custom = obj.get("custom") or {}
        gold[obj["id"]] = {
            "text": obj["text"],
            "intent": custom.get("intent"),
            "slots": custom.get("slots"),
        }
    if not gold:
        raise InputError(f"{path}: no supervisions")
    return gold


def read_hyps(path: Path) -> dict[str, dict]:
    """``id -> {"hyp", ["intent", "slots"]}`` from a onebest JSONL or a Kaldi text file."""
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        out = {}
        for lineno, obj in read_jsonl(path):
            if "id" not in obj or "hyp" not in obj:
                raise InputError(f"{path}:{lineno}: a 1-best record needs 'id' and 'hyp'")
            out[obj["id"]] = obj
        return out
    return {uid: {"id": uid, "hyp": hyp} for uid, hyp in read_kaldi_text(path).items()}


@dataclass
class ScoreConfig:
    hyps: Path = field(
        default=Path("onebest-test.jsonl.gz"), metadata={"help": "1-best hypotheses"}
    )
    gold: Path = field(
        default=Path("data/manifests/snips_nlu_test.jsonl.gz"),
        metadata={"help": "supervision manifest with references, intents and slots"},
    )
    word_counts: Path = field(
        default=Path("data/lang/word_counts.txt"),
        metadata={"help": "ASR training word counts (rare-word rule)"},
    )
    threshold: int = field(
        default=5, metadata={"help": "K: fewer than K training occurrences = rare"}
    )
    out_dir: Path = field(default=Path("exp/rescore"), metadata={"help": "output folder"})
    set_name: str = field(default="test", metadata={"help": "set name in output names"})
    system: str = field(default="system", metadata={"help": "system name (file suffix)"})
    bootstrap_samples: int = field(default=1000, metadata={"help": "bootstrap resamples"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})


def score(cfg: ScoreConfig) -> dict:
    gold = read_gold(cfg.gold)
    hyps = read_hyps(cfg.hyps)
    missing = sorted(set(gold) - set(hyps))
    if missing:
        raise InputError(
            f"{cfg.hyps}: no hypothesis for {len(missing)} utterance(s) of {cfg.gold}, "
            f"e.g. {', '.join(missing[:5])}"
        )
    counts = read_word_counts(cfg.word_counts)
    ids = sorted(gold)
    utts: list[UttCounts] = []
    results = []
    for uid in ids:
        ref, h = gold[uid]["text"].split(), hyps[uid]
        hyp = h["hyp"].split()
        u = utt_counts(ref, hyp, counts, cfg.threshold)
        if "intent" in h and gold[uid]["intent"] is not None:
            slots = h.get("slots") or []
            if len(slots) != len(hyp):
                raise InputError(
                    f"{cfg.hyps}: {uid}: {len(hyp)} words but {len(slots)} predicted slot tags"
                )
            add_slu(u, gold[uid]["intent"], ref, gold[uid]["slots"], h["intent"], hyp, slots)
        utts.append(u)
        results.append((uid, ref, hyp))
    stats = write_results(cfg.out_dir, cfg.set_name, cfg.system, results)
    m = corpus_metrics(utts)
    m["ci95"] = {
        name: bootstrap_ci(utts, name, cfg.bootstrap_samples, cfg.seed) for name in METRICS
    }
    m["per_intent"] = per_group_wer(
        utts, [gold[u]["intent"] or "?" for u in ids], cfg.bootstrap_samples, cfg.seed
    )
    m["system"], m["set"], m["hyps"] = cfg.system, cfg.set_name, str(cfg.hyps)
    with atomic_write(cfg.out_dir / f"metrics-{cfg.set_name}.json") as f:
        json.dump(m, f, indent=2)
    write_jsonl(
        cfg.out_dir / f"per-utt-{cfg.set_name}.jsonl.gz",
        ({"id": uid, **asdict(u)} for uid, u in zip(ids, utts, strict=True)),
    )

    def fmt(name):
        v, ci = m[name], m["ci95"][name]
        return "n/a" if v is None else f"{v:.2f}% [{ci[0]:.2f}, {ci[1]:.2f}]"

    lines = [
        stats.kaldi_line(),
        f"WER: {fmt('wer')}",
        f"rare-word WER (K={cfg.threshold}): {fmt('rare_wer')}  "
        f"[{m['rare_errors']} / {m['rare_ref']}], rare-token share {m['rare_share']:.1f}%",
        f"common-word WER: {fmt('common_wer')}  [{m['common_errors']} / {m['common_ref']}]",
        f"intent accuracy: {fmt('intent_acc')}",
        f"slot F1: {fmt('slot_f1')}",
        "",
        "PER-INTENT: intent utterances WER [95% CI] rare-WER [95% CI]",
    ]

    def fmt_group(v, name):
        ci = v["ci95"][name]
        return "n/a" if v[name] is None else f"{v[name]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    for intent, v in m["per_intent"].items():
        lines.append(f"{intent} {v['utterances']} {fmt_group(v, 'wer')} {fmt_group(v, 'rare_wer')}")
    with atomic_write(cfg.out_dir / f"rare-wer-{cfg.set_name}-{cfg.system}.txt") as f:
        f.write("\n".join(lines) + "\n")
    logging.info("[%s %s] %s", cfg.system, cfg.set_name, stats.kaldi_line())
    logging.info(
        "[%s %s] rare-word WER %s, common-word WER %s, intent acc %s, slot F1 %s",
        cfg.system,
        cfg.set_name,
        fmt("rare_wer"),
        fmt("common_wer"),
        fmt("intent_acc"),
        fmt("slot_f1"),
    )
    return m


def main(argv: list[str] | None = None) -> None:
    run_cli("score-wer", ScoreConfig, score, __doc__, argv)


if __name__ == "__main__":
    main()
