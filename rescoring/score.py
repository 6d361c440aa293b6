"""Score 1-best hypotheses: WER, rare/common-word WER, per-intent WER, SLU, bootstrap intervals.

Definitions are in :mod:`rescoring.metrics`. References, gold intents and slots come from the
NLU supervision manifest of the set.

Usage:
    score-wer --hyps exp/rescore/<system>/onebest-test.jsonl.gz \\
        --gold data/manifests/<corpus>_nlu_test.jsonl.gz --word-counts data/lang/word_counts.txt \\
        --threshold 5 --out-dir exp/rescore/<system> --set-name test --system <system>

``--hyps`` is a ``onebest-*.jsonl.gz`` of ``rescore-nbest`` (read only if its set manifest
vouches for it: a set of different or unfinished runs is an error) or a Kaldi-style text file
(``utt_id word word ...``; no NLU). ``--hyps`` and ``--gold`` must hold the same utterance ids
(either side having an id the other lacks is an error), and an id twice in one file is an error
naming both lines. Gold intents and slots are optional: utterances whose gold has an intent but
no slots count for intent accuracy, not for slot F1, and the summary says on how many
utterances slot F1 was measured.

``--slu-metrics slurp`` (default ``snips``: intent accuracy and exact-match slot F1 only, the
outputs as before this option) adds SLURP's evaluation (:mod:`rescoring.slurp_metrics`):
``scenario_acc``, ``action_acc``, ``span_f1``, ``slu_f1_word``, ``slu_f1_char`` and ``slu_f1``
(the combined SLU-F1) with bootstrap intervals, their summed counts under ``"slurp"`` in
``metrics-{set}.json``, each utterance's counts under ``"slurp"`` in ``per-utt-{set}.jsonl.gz``,
and four lines in ``rare-wer-*.txt``. ``make-report`` does not read them (yet).

OUTPUTS (in --out-dir; icefall layout; one all-or-nothing set, see rescoring/outputs.py):
    recogs-{set}-{system}.txt, errs-{set}-{system}.txt, wer-summary-{set}-{system}.txt
    rare-wer-{set}-{system}.txt   rare / common-word WER, rare-token share, per-intent WER
    metrics-{set}.json            every metric with its 95% bootstrap interval
    per-utt-{set}.jsonl.gz        per-utterance counts (for paired bootstrap tests)
    set-score-{set}-{system}.json written last: each file's sha256 and the run's options
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.cli import run_cli
from common.io import InputError, atomic_write, read_jsonl, write_jsonl
from common.wer import read_word_counts, write_results
from rescoring.fields import at, first_seen, get_list, get_str, shown
from rescoring.metrics import (
    METRICS,
    UttCounts,
    add_slu,
    bootstrap_ci,
    corpus_metrics,
    per_group_wer,
    utt_counts,
)
from rescoring.nbest import read_id_text
from rescoring.outputs import OutputSet, check_name_part, output_folder, verify_output
from rescoring.slurp_metrics import (
    SLURP_METRICS,
    SlurpCounts,
    slurp_bootstrap_ci,
    slurp_corpus_metrics,
    slurp_totals,
    utt_slurp_counts,
)

SLU_METRICS = ("snips", "slurp")


def read_gold(path: Path) -> dict[str, dict]:
    """``id -> {"text", "intent", "slots"}`` from a supervision manifest, type-checked.

    ``custom.intent`` and ``custom.slots`` are optional (a corpus without slots is scored for
    intent accuracy only); slots, when present, are one BIO tag per word of ``text``.
    ``custom.tts_engine`` (synthesized audio, ``prepare-snips --tts-plan``) is optional: where
    the gold has it, the metrics are also broken down per engine.

    Raises:
        InputError: naming file, line and utterance for a mistyped field, a duplicated id
            (both lines) or a slot list whose length is not the number of words.
    """
    gold: dict[str, dict] = {}
    first: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        where = at(path, lineno, obj.get("id"))
        uid = get_str(obj, "id", where, nonempty=True)
        first_seen(first, uid, path, lineno)
        text = get_str(obj, "text", where)
        custom = obj.get("custom")
        if custom is None:
            custom = {}
        elif not isinstance(custom, dict):
            raise InputError(f"{where}: field 'custom' must be an object, got {shown(custom)}")
        intent = get_str(custom, "intent", where, "custom.intent", required=False, nullable=True)
        slots = get_list(custom, "slots", where, str, "custom.slots", required=False, nullable=True)
        if slots is not None and len(slots) != len(text.split()):
            raise InputError(
                f"{where}: field 'custom.slots' has {len(slots)} tags for {len(text.split())} "
                "words of 'text' (one BIO tag per word)"
            )
        engine = get_str(
            custom, "tts_engine", where, "custom.tts_engine", required=False, nullable=True
        )
        gold[uid] = {"text": text, "intent": intent, "slots": slots, "engine": engine}
    if not gold:
        raise InputError(f"{path}: no supervisions")
    return gold


def read_hyps(path: Path) -> dict[str, dict]:
    """``id -> {"hyp", ["intent", "slots"]}`` from a onebest JSONL or a Kaldi text file.

    Raises:
        InputError: naming file, line and utterance for a mistyped field, a duplicated id
            (both lines), an intent without slots or a slot list whose length is not the number
            of words of ``hyp``.
    """
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        hyps = {uid: {"id": uid, "hyp": hyp} for uid, hyp in read_id_text(path).items()}
        if not hyps:
            raise InputError(f"{path}: no hypotheses")
        return hyps
    out: dict[str, dict] = {}
    first: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        where = at(path, lineno, obj.get("id"))
        uid = get_str(obj, "id", where, nonempty=True)
        first_seen(first, uid, path, lineno)
        row = {"id": uid, "hyp": get_str(obj, "hyp", where)}
        intent = get_str(obj, "intent", where, required=False)
        if intent is not None:
            slots = get_list(obj, "slots", where, str)
            if len(slots) != len(row["hyp"].split()):
                raise InputError(
                    f"{where}: {len(row['hyp'].split())} words but {len(slots)} predicted slot tags"
                )
            row["intent"], row["slots"] = intent, slots
        out[uid] = row
    if not out:
        raise InputError(f"{path}: no hypotheses")
    return out


def match_ids(hyps: dict, gold: dict, hyps_path: Path, gold_path: Path) -> list[str]:
    """The scored utterances: every id of ``gold``, which must be exactly the ids of ``hyps``."""
    for a, b, pa, pb in ((gold, hyps, gold_path, hyps_path), (hyps, gold, hyps_path, gold_path)):
        missing = sorted(set(a) - set(b))
        if missing:
            what = "no hypothesis" if b is hyps else "no gold supervision"
            raise InputError(
                f"{pb}: {what} for {len(missing)} utterance(s) of {pa}, e.g. "
                f"{', '.join(missing[:5])} (--hyps and --gold must hold the same utterances)"
            )
    return sorted(gold)


@dataclass
class ScoreConfig:
    hyps: Path = field(
        default=Path("onebest-test.jsonl.gz"), metadata={"help": "1-best hypotheses"}
    )
    gold: Path | None = field(
        default=None,
        metadata={"help": "supervision manifest with references, intents and slots; required"},
    )
    word_counts: Path = field(
        default=Path("data/lang/word_counts.txt"),
        metadata={"help": "ASR training word counts (rare-word rule)"},
    )
    threshold: int = field(
        default=5, metadata={"help": "K: fewer than K training occurrences = rare"}
    )
    out_dir: Path = field(
        default=Path("exp/rescore"),
        metadata={"help": "output folder (created; locked for the run: one run at a time)"},
    )
    set_name: str = field(default="test", metadata={"help": "set name in output names"})
    system: str = field(default="system", metadata={"help": "system name (file suffix)"})
    bootstrap_samples: int = field(default=1000, metadata={"help": "bootstrap resamples"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    slu_metrics: str = field(
        default="snips",
        metadata={
            "help": "snips: intent accuracy and exact-match slot F1; slurp: also SLURP's "
            "scenario / action accuracy, span F1 and SLU-F1 (word, char, combined)"
        },
    )


def score(cfg: ScoreConfig) -> dict:
    if cfg.gold is None:
        raise InputError("--gold is required (the set's supervision manifest)")
    check_name_part(cfg.set_name, "--set-name")
    check_name_part(cfg.system, "--system")
    if cfg.bootstrap_samples < 1:
        raise InputError(f"--bootstrap-samples must be >= 1, got {cfg.bootstrap_samples}")
    if cfg.threshold < 0:
        raise InputError(f"--threshold must be >= 0, got {cfg.threshold}")
    if cfg.slu_metrics not in SLU_METRICS:
        raise InputError(
            f"--slu-metrics must be one of {', '.join(SLU_METRICS)}, got {cfg.slu_metrics!r}"
        )
    slurp = cfg.slu_metrics == "slurp"
    with output_folder(cfg.out_dir):
        verify_output(cfg.hyps)
        gold = read_gold(cfg.gold)
        hyps = read_hyps(cfg.hyps)
        ids = match_ids(hyps, gold, cfg.hyps, cfg.gold)
        try:
            counts = read_word_counts(cfg.word_counts)
        except UnicodeDecodeError as e:
            raise InputError(f"{cfg.word_counts}: not UTF-8 text ({e.reason})") from None
        utts: list[UttCounts] = []
        slurp_counts: list[SlurpCounts] = []
        results = []
        nlu_utts = slot_utts = 0
        for uid in ids:
            ref, h = gold[uid]["text"].split(), hyps[uid]
            hyp = h["hyp"].split()
            u = utt_counts(ref, hyp, counts, cfg.threshold)
            sc = SlurpCounts()
            if "intent" in h and gold[uid]["intent"] is not None:
                nlu = (gold[uid]["intent"], ref, gold[uid]["slots"], h["intent"], hyp, h["slots"])
                add_slu(u, *nlu)
                nlu_utts += 1
                slot_utts += gold[uid]["slots"] is not None
                if slurp:
                    sc = utt_slurp_counts(*nlu)
            utts.append(u)
            slurp_counts.append(sc)
            results.append((uid, ref, hyp))
        m = corpus_metrics(utts)
        m["ci95"] = {
            name: bootstrap_ci(utts, name, cfg.bootstrap_samples, cfg.seed) for name in METRICS
        }
        m["per_intent"] = per_group_wer(
            utts, [gold[u]["intent"] or "?" for u in ids], cfg.bootstrap_samples, cfg.seed
        )
        engines = [gold[u]["engine"] for u in ids]
        if any(e is not None for e in engines):  # synthesized audio: WER per TTS engine
            m["per_engine"] = per_group_wer(
                utts, [e or "?" for e in engines], cfg.bootstrap_samples, cfg.seed
            )
        m["system"], m["set"], m["hyps"] = cfg.system, cfg.set_name, str(cfg.hyps)
        m["slot_utterances"] = slot_utts
        if slurp:
            add_slurp_metrics(m, slurp_counts, cfg)
        params = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
        if not slurp:
            del params["slu_metrics"]  # the default's set manifest stays as it was
        name = f"score-{cfg.set_name}-{cfg.system}"
        with OutputSet(cfg.out_dir, name, "score-wer", params) as out:
            stats = write_results(out.dir, cfg.set_name, cfg.system, results)
            with atomic_write(out.dir / f"metrics-{cfg.set_name}.json") as f:
                json.dump(m, f, indent=2)
            write_jsonl(
                out.dir / f"per-utt-{cfg.set_name}.jsonl.gz",
                (
                    {"id": uid, **asdict(u), **({"slurp": asdict(sc)} if slurp else {})}
                    for uid, u, sc in zip(ids, utts, slurp_counts, strict=True)
                ),
            )
            write_summary(out.dir, cfg, m, stats, nlu_utts, slot_utts)
    return m


def add_slurp_metrics(m: dict, counts: list[SlurpCounts], cfg: ScoreConfig) -> None:
    """``--slu-metrics slurp``: SLURP's metrics (:mod:`rescoring.slurp_metrics`) into ``m``.

    Adds :data:`SLURP_METRICS` (percent; ``None`` when undefined) with their 95% bootstrap
    intervals in ``m["ci95"]`` (the same resamples as the other intervals) and the summed
    counts in ``m["slurp"]``. SLURP's intent accuracy equals ``intent_acc``, not repeated.
    """
    values = slurp_corpus_metrics(counts)
    for name in SLURP_METRICS:
        m[name] = values[name]
        m["ci95"][name] = slurp_bootstrap_ci(counts, name, cfg.bootstrap_samples, cfg.seed)
    m["slurp"] = slurp_totals(counts)


def write_summary(
    folder: Path, cfg: ScoreConfig, m: dict, stats, nlu_utts: int, slot_utts: int
) -> None:
    """``rare-wer-{set}-{system}.txt``, and the same headline numbers in the log."""

    def fmt(name):
        v, ci = m[name], m["ci95"][name]
        return "n/a" if v is None else f"{v:.2f}% [{ci[0]:.2f}, {ci[1]:.2f}]"

    slot_note = ""
    if slot_utts < nlu_utts:
        slot_note = (
            f"  (over {slot_utts} of {nlu_utts} utterances with NLU: the gold of "
            f"{nlu_utts - slot_utts} has no slots, so they count for intent accuracy only)"
        )
    lines = [
        stats.kaldi_line(),
        f"WER: {fmt('wer')}",
        f"rare-word WER (K={cfg.threshold}): {fmt('rare_wer')}  "
        f"[{m['rare_errors']} / {m['rare_ref']}], rare-token share {m['rare_share']:.1f}%",
        f"common-word WER: {fmt('common_wer')}  [{m['common_errors']} / {m['common_ref']}]",
        f"intent accuracy: {fmt('intent_acc')}",
        f"slot F1: {fmt('slot_f1')}" + slot_note,
        *(_slurp_lines(fmt) if cfg.slu_metrics == "slurp" else []),
        "",
        "PER-INTENT: intent utterances WER [95% CI] rare-WER [95% CI]",
    ]

    def fmt_group(v, name):
        ci = v["ci95"][name]
        return "n/a" if v[name] is None else f"{v[name]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    for intent, v in m["per_intent"].items():
        lines.append(f"{intent} {v['utterances']} {fmt_group(v, 'wer')} {fmt_group(v, 'rare_wer')}")
    with atomic_write(folder / f"rare-wer-{cfg.set_name}-{cfg.system}.txt") as f:
        f.write("\n".join(lines) + "\n")
    logging.info("[%s %s] %s", cfg.system, cfg.set_name, stats.kaldi_line())
    logging.info(
        "[%s %s] rare-word WER %s, common-word WER %s, intent acc %s, slot F1 %s",
        cfg.system,
        cfg.set_name,
        fmt("rare_wer"),
        fmt("common_wer"),
        fmt("intent_acc"),
        fmt("slot_f1") + slot_note,
    )
    if cfg.slu_metrics == "slurp":
        logging.info(
            "[%s %s] SLURP: scenario acc %s, action acc %s, span F1 %s, SLU-F1 %s",
            cfg.system,
            cfg.set_name,
            fmt("scenario_acc"),
            fmt("action_acc"),
            fmt("span_f1"),
            fmt("slu_f1"),
        )


def _slurp_lines(fmt) -> list[str]:
    """The summary's SLURP lines (``--slu-metrics slurp``; entities on the slot F1 utterances)."""
    return [
        f"SLURP scenario accuracy: {fmt('scenario_acc')}",
        f"SLURP action accuracy: {fmt('action_acc')}",
        f"SLURP span F1: {fmt('span_f1')}",
        f"SLURP SLU-F1: {fmt('slu_f1')}  (word-level {fmt('slu_f1_word')}, "
        f"char-level {fmt('slu_f1_char')})",
    ]


def main(argv: list[str] | None = None) -> None:
    run_cli("score-wer", ScoreConfig, score, __doc__, argv)


if __name__ == "__main__":
    main()
