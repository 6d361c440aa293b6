"""Write a recipe's RESULTS.md, results.json and plots from the scored systems.

Reads, for every system folder ``<rescore-dir>/<system>/``: ``metrics-{dev,test}.json`` and
``per-utt-{set}.jsonl.gz`` (``score-wer``), ``tuned.json`` and ``sweep-dev.tsv``
(``tune-rescoring``), and ``cmd.sh`` (the exact commands, written by the recipe). A system that
was not run is listed as "not run". Paired bootstrap p-values compare each rescoring system with
LM-only rescoring and with the RNN-T 1-best on the same utterances.

Every file of ``score-wer`` and ``tune-rescoring`` is read only when its set manifest vouches
for it (rescoring/outputs.py): a folder holding files of different or unfinished runs is an
error that says which stage to re-run. Files are type-checked (errors name file and line), and
two systems scored on different utterances cannot be compared (an error, not a wrong p-value).

Usage:
    make-report --rescore-dir exp/rescore --out RESULTS.md --title "SNIPS (default preset)" \\
        --cmd-files 'exp/asr/*/cmd.sh' 'exp/lm/*/cmd.sh'

OUTPUTS:
    RESULTS.md, results.json (system -> set -> metric -> {value, ci95}), and beside them
    plots/lambda-sweep-dev.png, plots/test-wer.png
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import run_cli
from common.io import InputError, atomic_write, open_text, read_jsonl
from rescoring.fields import at, check_number, get_int, get_str, is_number, shown
from rescoring.metrics import METRICS, UttCounts, paired_bootstrap_diff
from rescoring.outputs import check_writable, verify_output
from rescoring.params import read_tuned

SYSTEMS = {
    "rnnt_1best": "RNN-T 1-best",
    "oracle": "n-best oracle",
    "lm": "+ LM rescoring (LM objective only)",
    "multitask_linear": "+ multitask LM, linear weights",
    "multitask_rwm": "+ multitask LM, RWM weights",
    "pretrained_multitask_rwm": "+ LM-pretrained, multitask fine-tuned (RWM)",
}
SETS = ("dev", "test")
METRIC_NAMES = {
    "wer": "WER",
    "rare_wer": "rare-word WER",
    "common_wer": "common-word WER",
    "intent_acc": "intent acc",
    "slot_f1": "slot F1",
}
RESCORING_SYSTEMS = ("lm", "multitask_linear", "multitask_rwm", "pretrained_multitask_rwm")
# (A, B) pairs of the paired bootstrap: every rescorer vs the 1-best and vs LM-only rescoring,
# then the two ablations: RWM vs linear task weights, LM pre-training vs none (both RWM).
PAIRS = tuple((a, b) for b in RESCORING_SYSTEMS for a in ("rnnt_1best", "lm") if a != b) + (
    ("multitask_linear", "multitask_rwm"),
    ("multitask_rwm", "pretrained_multitask_rwm"),
)


def _read_json(path: Path):
    """A JSON file; errors name the file (and line)."""
    with open_text(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _check_ci(value, where: str, name: str) -> None:
    if value is None:
        return
    if not (isinstance(value, list) and len(value) == 2 and all(map(is_number, value))):
        raise InputError(f"{where}: field '{name}' must be null or [low, high], got {shown(value)}")


def read_metrics(path: Path) -> dict:
    """``metrics-{set}.json`` of ``score-wer``, verified against its set manifest and typed."""
    verify_output(path)
    m = _read_json(path)
    where = at(path)
    if not isinstance(m, dict):
        raise InputError(f"{where}: expected a JSON object, got {shown(m)}")
    for k in (*METRICS, "rare_share"):
        if m.get(k) is not None:
            check_number(m[k], where, k)
    ci = m.get("ci95") or {}
    if not isinstance(ci, dict):
        raise InputError(f"{where}: field 'ci95' must be an object, got {shown(ci)}")
    for k in METRICS:
        _check_ci(ci.get(k), where, f"ci95.{k}")
    get_int(m, "utterances", where, minimum=0)
    per_intent = m.get("per_intent")
    if per_intent is not None and not isinstance(per_intent, dict):
        raise InputError(f"{where}: field 'per_intent' must be an object, got {shown(per_intent)}")
    for intent, v in (per_intent or {}).items():
        name = f"per_intent.{intent}"
        if not isinstance(v, dict):
            raise InputError(f"{where}: field '{name}' must be an object, got {shown(v)}")
        get_int(v, "utterances", where, f"{name}.utterances", minimum=0)
        for k in ("wer", "rare_wer"):
            if v.get(k) is not None:
                check_number(v[k], where, f"{name}.{k}")
    return m


def read_per_utt(path: Path) -> tuple[list[str], list[UttCounts]]:
    """``per-utt-{set}.jsonl.gz`` of ``score-wer``: utterance ids and their counts."""
    verify_output(path)
    ids, utts = [], []
    names = list(UttCounts.__dataclass_fields__)
    for lineno, obj in read_jsonl(path):
        where = at(path, lineno, obj.get("id"))
        ids.append(get_str(obj, "id", where, nonempty=True))
        utts.append(UttCounts(**{k: get_int(obj, k, where, minimum=0) for k in names if k in obj}))
    return ids, utts


def read_sweep(path: Path) -> list[tuple[float, float, float]]:
    """``sweep-dev.tsv`` of ``tune-rescoring``: (λ, β, dev WER) rows."""
    verify_output(path)
    rows = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 or not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            try:
                if len(parts) != 3:
                    raise ValueError
                lam, beta, wer = (float(x) for x in parts)
            except ValueError:
                raise InputError(
                    f"{path}:{lineno}: expected 'lm_scale<TAB>word_bonus<TAB>dev_wer', "
                    f"got {line.rstrip()!r}"
                ) from None
            rows.append((lam, beta, wer))
    return rows


def collect(rescore_dir: Path) -> dict:
    """system -> set -> metric -> {"value", "ci95"} (+ per-utt counts kept aside)."""
    results: dict = {}
    for name in SYSTEMS:
        d = rescore_dir / name
        for s in SETS:
            mp = d / f"metrics-{s}.json"
            if not mp.is_file():
                continue
            m = read_metrics(mp)
            ci = m.get("ci95") or {}
            entry = {k: {"value": m.get(k), "ci95": ci.get(k)} for k in METRICS}
            entry["rare_share"] = {"value": m.get("rare_share"), "ci95": None}
            entry["utterances"] = m.get("utterances")
            entry["per_intent"] = m.get("per_intent")
            entry["nlu_utterances"] = m.get("has_nlu")
            entry["slot_utterances"] = m.get("slot_utterances")
            results.setdefault(name, {})[s] = entry
        tp = d / "tuned.json"
        if tp.is_file() and name in results:
            verify_output(tp)
            read_tuned(tp)  # validated; the table shows the file as written
            results[name]["tuned"] = _read_json(tp)
    return results


def paired_tests(rescore_dir: Path, results: dict, set_name: str = "test") -> list[dict]:
    tests = []
    per_utt: dict[str, tuple[Path, list[str], list[UttCounts]]] = {}  # each file read once
    for a, b in PAIRS:
        if set_name not in results.get(a, {}) or set_name not in results.get(b, {}):
            continue
        pa, pb = (
            rescore_dir / a / f"per-utt-{set_name}.jsonl.gz",
            rescore_dir / b / f"per-utt-{set_name}.jsonl.gz",
        )
        if not (pa.is_file() and pb.is_file()):
            continue
        for name, path in ((a, pa), (b, pb)):
            if name not in per_utt:
                per_utt[name] = (path, *read_per_utt(path))
        (_, ids_a, ua), (_, ids_b, ub) = per_utt[a], per_utt[b]
        if ids_a != ids_b:
            diff = sorted(set(ids_a) ^ set(ids_b))
            raise InputError(
                f"{pa} and {pb}: the systems were scored on different utterances "
                f"({len(ids_a)} vs {len(ids_b)}"
                + (f", e.g. {', '.join(diff[:5])} in only one" if diff else ", in another order")
                + "): a paired test needs the same ones; re-run score-wer on the same --gold"
            )
        for metric in ("wer", "rare_wer"):
            va, vb = results[a][set_name][metric]["value"], results[b][set_name][metric]["value"]
            d = paired_bootstrap_diff(ua, ub, metric) or {}
            tests.append(
                {
                    "a": a,
                    "b": b,
                    "set": set_name,
                    "metric": metric,
                    "a_value": va,
                    "b_value": vb,
                    "relative_change": None if not va or vb is None else 100 * (vb - va) / va,
                    "diff_ci95": d.get("diff_ci95"),
                    "p_b_better": d.get("p_b_better"),
                }
            )
    return tests


def _read_text(path: str | Path) -> str:
    with open_text(path) as f:
        return f.read()


def _find(tests: list[dict], a: str, b: str, metric: str) -> dict | None:
    return next(
        (t for t in tests if (t["a"], t["b"], t["metric"]) == (a, b, metric)),
        None,
    )


def targets_md(results: dict, tests: list[dict], cfg: ReportConfig) -> list[str]:
    """The headline checks on test: met or not, with the numbers behind them."""
    h = cfg.headline_system
    if h not in results or "test" not in results[h]:
        return []
    rows, verdicts = [], []
    checks = (
        ("lm", "rare_wer", cfg.target_rare_vs_lm),
        ("rnnt_1best", "rare_wer", cfg.target_rare_vs_1best),
        ("lm", "wer", 0.0),
        ("rnnt_1best", "wer", 0.0),
    )
    for a, metric, target in checks:
        t = _find(tests, a, h, metric)
        if t is None or t["relative_change"] is None:
            rows.append(f"| {METRIC_NAMES[metric]} vs {SYSTEMS[a]} | | n/a | | | n/a |")
            verdicts.append(False)
            continue
        met = t["relative_change"] <= -target if target > 0 else t["b_value"] < t["a_value"]
        verdicts.append(met)
        want = f"≤ -{target:g}% relative" if target > 0 else "lower"
        ci = t["diff_ci95"]
        ci_s = "n/a" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"
        p = "n/a" if t["p_b_better"] is None else f"{t['p_b_better']:.3f}"
        rows.append(
            f"| {METRIC_NAMES[metric]} vs {SYSTEMS[a]} | {want} | {t['a_value']:.2f} → "
            f"{t['b_value']:.2f} ({t['relative_change']:+.1f}%) | {ci_s} | {p} | "
            f"{'**met**' if met else '**NOT met**'} |"
        )
    md = [
        "## Targets (test)",
        "",
        f"Headline system: {SYSTEMS[h]}. "
        + (
            "**All targets met.**"
            if all(verdicts)
            else f"**{verdicts.count(False)} of {len(verdicts)} targets NOT met.**"
        ),
        "",
        "| check | target | measured | Δ 95% CI (points) | p(better) | verdict |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    one, orc = results.get("rnnt_1best", {}).get("test"), results.get("oracle", {}).get("test")
    if one and orc and one["rare_wer"]["value"] and orc["rare_wer"]["value"] is not None:
        r1, ro = one["rare_wer"]["value"], orc["rare_wer"]["value"]
        md += [
            f"Ceiling: the n-best oracle's rare-word WER is {ro:.2f} against {r1:.2f} for the "
            f"1-best, so even a perfect rescorer could lower rare-word WER by at most "
            f"{100 * (r1 - ro) / r1:.1f}% relative with these n-best lists.",
            "",
        ]
    return md


def _glob(pattern: str) -> list[Path]:
    if Path(pattern).is_absolute():
        return sorted(Path("/").glob(pattern.lstrip("/")))
    return sorted(Path().glob(pattern))


def configs_md(patterns: tuple[str, ...]) -> list[str]:
    """Every option an experiment ran with, from its config.json (model + training)."""
    files = [p for pattern in patterns for p in _glob(pattern) if p.is_file()]
    if not files:
        return []
    md = ["## Resolved configurations", ""]
    for p in files:
        obj = _read_json(p)
        if not isinstance(obj, dict):
            raise InputError(f"{p}: expected a JSON object, got {shown(obj)}")
        md += [f"<details><summary>{p.parent}</summary>", ""]
        for key in ("model", "config"):
            if isinstance(obj.get(key), dict):
                items = ", ".join(f"{k}={v}" for k, v in sorted(obj[key].items()))
                md += [f"- **{key}**: {items}"]
        if isinstance(obj.get("env"), dict):
            md += ["- **env**: " + ", ".join(f"{k}={v}" for k, v in sorted(obj["env"].items()))]
        md += ["", "</details>", ""]
    return md


def per_intent_md(results: dict, headline: str, set_name: str = "test") -> list[str]:
    names = [n for n in ("rnnt_1best", "lm", headline, "oracle") if n in results]
    per = {n: results[n].get(set_name, {}).get("per_intent") or {} for n in names}
    intents = sorted({i for p in per.values() for i in p})
    if not intents:
        return []

    def cell(n: str, i: str, k: str) -> str:
        v = per[n].get(i, {}).get(k)
        return "n/a" if v is None else f"{v:.1f}"

    head = " | ".join(f"{SYSTEMS[n]} WER / rare" for n in names)
    md = [
        f"## Per-intent breakdown ({set_name})",
        "",
        f"| gold intent | utterances | {head} |",
        "|---|---|" + "---|" * len(names),
    ]
    for i in intents:
        utts = next((per[n][i]["utterances"] for n in names if i in per[n]), 0)
        md.append(
            f"| {i} | {utts} | "
            + " | ".join(f"{cell(n, i, 'wer')} / {cell(n, i, 'rare_wer')}" for n in names)
            + " |"
        )
    return md + [""]


def slot_coverage_md(results: dict, set_name: str) -> list[str]:
    """A note for each system whose slot F1 covers fewer utterances than its intent accuracy
    (gold without slots: ``score-wer`` scores the intent only)."""
    notes = []
    for name, label in SYSTEMS.items():
        e = results.get(name, {}).get(set_name)
        if not e or e.get("slot_utterances") is None or not e.get("nlu_utterances"):
            continue
        if e["slot_utterances"] < e["nlu_utterances"]:
            notes.append(
                f"Slot F1 of {label} on {set_name} is over {e['slot_utterances']} of "
                f"{e['nlu_utterances']} utterances: the gold of the others has no slots "
                "(they count for intent accuracy only)."
            )
    return ["", *notes] if notes else []


def _fmt(cell: dict | None) -> str:
    if not cell or cell.get("value") is None:
        return "n/a"
    ci = cell.get("ci95")
    return f"{cell['value']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{cell['value']:.2f}"


def plot(rescore_dir: Path, results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    any_line = False
    for name in RESCORING_SYSTEMS:
        p = rescore_dir / name / "sweep-dev.tsv"
        if not p.is_file():
            continue
        best: dict[float, float] = {}
        for lam, _beta, wer in read_sweep(p):
            best[lam] = min(best.get(lam, float("inf")), wer)
        xs = sorted(best)
        ax.plot(xs, [best[x] for x in xs], marker=".", label=SYSTEMS[name])
        any_line = True
    if any_line:
        ax.set_xlabel("LM scale λ (best β for each λ)")
        ax.set_ylabel("dev WER (%)")
        ax.set_title("Dev WER over the λ sweep")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "lambda-sweep-dev.png")
        fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    names = [n for n in SYSTEMS if n in results and "test" in results[n]]
    if names:
        import numpy as np

        fig, ax = plt.subplots(figsize=(9, 4.5))
        x = np.arange(len(names))
        for k, (metric, off) in enumerate((("wer", -0.2), ("rare_wer", 0.2))):
            vals, lo, hi = [], [], []
            for n in names:
                c = results[n]["test"][metric]
                v = c["value"] if c["value"] is not None else np.nan
                ci = c["ci95"] or (v, v)
                vals.append(v)
                lo.append(v - ci[0])
                hi.append(ci[1] - v)
            ax.bar(
                x + off,
                vals,
                width=0.4,
                yerr=[lo, hi],
                capsize=3,
                label=METRIC_NAMES[metric],
                color=("tab:blue", "tab:orange")[k],
            )
        ax.set_xticks(
            x, [SYSTEMS[n].lstrip("+ ") for n in names], rotation=20, ha="right", fontsize=8
        )
        ax.set_ylabel("test error rate (%)")
        ax.set_title("Test WER and rare-word WER per system (95% bootstrap intervals)")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        written.append(out_dir / "test-wer.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


@dataclass
class ReportConfig:
    rescore_dir: Path = field(default=Path("exp/rescore"), metadata={"help": "system folders"})
    out: Path = field(default=Path("RESULTS.md"), metadata={"help": "the report"})
    title: str = field(default="Results", metadata={"help": "report title"})
    cmd_files: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "glob patterns of further cmd.sh files listed under 'Exact commands' "
            "(e.g. 'exp/asr/*/cmd.sh' 'exp/lm/*/cmd.sh'), before the rescoring systems'"
        },
    )
    config_files: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "glob patterns of the config.json files the training entry points write "
            "(e.g. 'exp/asr/*/config.json' 'exp/lm/*/config.json'): every size, count and "
            "weight actually used, listed under 'Resolved configurations'"
        },
    )
    headline_system: str = field(
        default="pretrained_multitask_rwm",
        metadata={"help": "system whose test results are checked against the targets"},
    )
    target_rare_vs_lm: float = field(
        default=5.0,
        metadata={"help": "target: relative rare-word WER reduction (%%) vs LM-only rescoring"},
    )
    target_rare_vs_1best: float = field(
        default=15.0,
        metadata={"help": "target: relative rare-word WER reduction (%%) vs the RNN-T 1-best"},
    )
    extra_md: tuple[Path, ...] = field(
        default=(),
        metadata={
            "help": "markdown files appended as further sections (e.g. stage timings, diagnostics)"
        },
    )


def make_report(cfg: ReportConfig) -> dict:
    if not cfg.rescore_dir.is_dir():
        raise InputError(f"{cfg.rescore_dir}: no such folder (run the rescoring stages first)")
    check_writable(cfg.out.parent)
    results = collect(cfg.rescore_dir)
    tests = paired_tests(cfg.rescore_dir, results)
    plots = plot(cfg.rescore_dir, results, cfg.out.parent / "plots")
    md = [
        f"# {cfg.title}",
        "",
        "Generated by `make-report`; every number is measured by the recipe (values in %, "
        "95% bootstrap intervals over utterances in brackets). λ and β are tuned on dev only.",
        "",
    ]
    md += targets_md(results, tests, cfg)
    for s in SETS:
        md += [
            f"## {s}",
            "",
            "| system | " + " | ".join(METRIC_NAMES.values()) + " |",
            "|---|" + "---|" * len(METRIC_NAMES),
        ]
        for name, label in SYSTEMS.items():
            entry = results.get(name, {}).get(s)
            if entry is None:
                md.append(f"| {label} | " + " | ".join(["not run"] * len(METRIC_NAMES)) + " |")
            else:
                md.append(f"| {label} | " + " | ".join(_fmt(entry[m]) for m in METRIC_NAMES) + " |")
        share = next(
            (results[n][s]["rare_share"]["value"] for n in results if s in results[n]), None
        )
        if share is not None:
            md += ["", f"Rare-token share of {s} references: {share:.1f}%."]
        md += slot_coverage_md(results, s)
        md.append("")
    md += [
        "## Tuned weights (dev)",
        "",
        "| system | scorer | λ | β | dev WER | dev WER first pass |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in SYSTEMS.items():
        t = results.get(name, {}).get("tuned")
        if t:
            md.append(
                f"| {label} | {t['scorer']} | {t['lm_scale']:g} | {t['word_bonus']:g} | "
                f"{t['dev_wer']:.2f} | {t['dev_wer_first_pass']:.2f} |"
            )
    md.append("")
    if tests:
        md += [
            "## Paired bootstrap (test)",
            "",
            "p = share of resamples in which B is *not* better than A (small p: B is better); "
            "Δ = B - A in points with its 95% interval over the same resamples. The last rows "
            "are the ablations: RWM vs linear task weights, LM pre-training vs none.",
            "",
            "| A | B | metric | A | B | relative change | Δ 95% CI | p(B better) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in tests:
            rel = "n/a" if t["relative_change"] is None else f"{t['relative_change']:+.1f}%"
            va = "n/a" if t["a_value"] is None else f"{t['a_value']:.2f}"
            vb = "n/a" if t["b_value"] is None else f"{t['b_value']:.2f}"
            p = "n/a" if t["p_b_better"] is None else f"{t['p_b_better']:.3f}"
            ci = t["diff_ci95"]
            ci_s = "n/a" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"
            md.append(
                f"| {SYSTEMS[t['a']]} | {SYSTEMS[t['b']]} | {METRIC_NAMES[t['metric']]} | "
                f"{va} | {vb} | {rel} | {ci_s} | {p} |"
            )
        md.append("")
    md += per_intent_md(results, cfg.headline_system)
    if plots:
        md += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    cmds = [(str(p.parent), p) for pattern in cfg.cmd_files for p in _glob(pattern) if p.is_file()]
    cmds += [(SYSTEMS[name], cfg.rescore_dir / name / "cmd.sh") for name in SYSTEMS]
    cmds = [(n, p) for n, p in cmds if p.is_file()]
    if cmds:
        md += ["## Exact commands", ""]
        for name, p in cmds:
            md += [f"### {name}", "", "```bash", _read_text(p).rstrip(), "```", ""]
    md += configs_md(cfg.config_files)
    for extra in cfg.extra_md:
        if Path(extra).is_file():
            md += [_read_text(extra).rstrip(), ""]
    with atomic_write(cfg.out) as f:
        f.write("\n".join(md))
    payload = {"systems": results, "paired_bootstrap": tests}
    with atomic_write(cfg.out.with_name("results.json")) as f:
        json.dump(payload, f, indent=2)
    logging.info(
        "Wrote %s, %s and %d plots", cfg.out, cfg.out.with_name("results.json"), len(plots)
    )
    return payload


def main(argv: list[str] | None = None) -> None:
    run_cli("make-report", ReportConfig, make_report, __doc__, argv)


if __name__ == "__main__":
    main()
