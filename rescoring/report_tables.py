"""The markdown sections of RESULTS.md, each a function of the collected results and the matrix.

Labels, the headline system, the comparisons and the targets all come from the recipe's
experiment matrix (:mod:`rescoring.experiments`); this module knows no system by name. Sets:
``tune_set`` (λ, β tuned there), ``eval_set`` (targets, paired tests, per-intent table) and any
further set (set beside ``eval_set`` by :func:`cross_set_md`).

Usage:
    md = targets_md(results, pairs, exps) + metrics_table_md(results, exps, "test") + ...
"""

from __future__ import annotations

from pathlib import Path

from common.io import InputError, open_text
from rescoring.experiments import Experiments
from rescoring.fields import shown
from rescoring.params import Weights
from rescoring.results import PairedTests, read_json

METRIC_NAMES = {
    "wer": "WER",
    "rare_wer": "rare-word WER",
    "common_wer": "common-word WER",
    "intent_acc": "intent acc",
    "slot_f1": "slot F1",
}


def read_text(path: str | Path) -> str:
    with open_text(path) as f:
        return f.read()


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _ci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _cell(cell: dict | None, ci95: bool = True) -> str:
    """``value [lo, hi]``; a seeded system's ``mean ± sd [lo, hi]`` (its interval resamples
    seeds and utterances); without the interval if not ``ci95``."""
    if not cell or cell.get("value") is None:
        return "n/a"
    ci, sd = cell.get("ci95") if ci95 else None, cell.get("sd")
    v = f"{cell['value']:.2f}" + ("" if sd is None else f" ± {sd:.2f}")
    return f"{v} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else v


def targets_md(results: dict, pairs: PairedTests, exps: Experiments) -> list[str]:
    """The headline checks on the evaluation set (and the targets and limits on other sets):
    met or not, with the numbers behind them. ``pairs`` tests on the evaluation set; its
    ``on(set)`` gives the tests on another set."""
    h, s = exps.headline, exps.eval_set
    if h not in results or s not in results[h]:
        return []
    rows, verdicts = [], []

    def where(system: str | None, set_name: str | None) -> str:
        """`` of <system>`` unless it is the headline, `` (<set>)`` unless it is the eval set."""
        return ("" if system in (None, h) else f" of {exps.label(system)}") + (
            "" if set_name in (None, s) else f" ({set_name})"
        )

    for target in exps.targets:
        a, metric, goal = target.against, target.metric, target.min_relative_reduction
        b, on = target.system or h, target.set or s
        what = f"{METRIC_NAMES[metric]}{where(b, None)} vs {exps.label(a)}{where(None, on)}"
        t = pairs.on(on).test(a, b, metric)
        if t is None or t["relative_change"] is None:
            rows.append(f"| {what} | | n/a | | | n/a |")
            verdicts.append(False)
            continue
        met = t["relative_change"] <= -goal if goal > 0 else t["b_value"] < t["a_value"]
        want = f"≤ -{goal:g}% relative" if goal > 0 else "lower"
        if target.max_p_value is not None:  # and shown: the one-sided p below the bound
            pb = t["p_b_better"]
            met = met and pb is not None and pb < target.max_p_value
            want += f", p < {target.max_p_value:g}"
        verdicts.append(met)
        p = _num(t["p_b_better"], ".3f")
        rows.append(
            f"| {what} | {want} | {t['a_value']:.2f} → {t['b_value']:.2f} "
            f"({t['relative_change']:+.1f}%) | {_ci(t['diff_ci95'])} | {p} | "
            f"{'**met**' if met else '**NOT met**'} |"
        )
    for lim in exps.limits:
        what = f"{METRIC_NAMES[lim.metric]} of {exps.label(lim.system)}{where(None, lim.set)}"
        want = f"{'<' if lim.strict else '≤'} {lim.max_value:g}"
        cell = results.get(lim.system, {}).get(lim.set or s, {}).get(lim.metric)
        value = None if not cell else cell.get("value")
        if value is None:
            rows.append(f"| {what} | {want} | n/a | | | **NOT met** |")
            verdicts.append(False)
            continue
        met = value < lim.max_value if lim.strict else value <= lim.max_value
        verdicts.append(met)
        rows.append(
            f"| {what} | {want} | {_cell(cell)} ({value - lim.max_value:+.2f}) | | | "
            f"{'**met**' if met else '**NOT met**'} |"
        )
    md = [
        f"## Targets ({s})",
        "",
        f"Headline system: {exps.label(h)}. "
        + (
            "**All targets met.**"
            if all(verdicts)
            else f"**{verdicts.count(False)} of {len(verdicts)} targets NOT met.**"
        ),
        "",
        "| check | target | measured | Δ 95% CI (points) | p (one-sided) | verdict |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if any(t.max_p_value is not None for t in exps.targets):
        md += [
            'A target with "p < x" is met only if, besides the change asked for, the paired '
            "bootstrap shows it: its one-sided p, the share of resamples in which the system is "
            "not better (small p: better), is below x (a seeded system's resamples draw seeds "
            "and utterances).",
            "",
        ]
    one = results.get(exps.first_pass, {}).get(s)
    orc = results.get(exps.oracle, {}).get(s)
    if one and orc and one["rare_wer"]["value"] and orc["rare_wer"]["value"] is not None:
        r1, ro = one["rare_wer"]["value"], orc["rare_wer"]["value"]
        md += [
            f"Ceiling: the n-best oracle's rare-word WER is {ro:.2f} against {r1:.2f} for the "
            f"1-best, so even a perfect rescorer could lower rare-word WER by at most "
            f"{100 * (r1 - ro) / r1:.1f}% relative with these n-best lists.",
            "",
        ]
    return md


def slot_coverage_md(results: dict, exps: Experiments, set_name: str) -> list[str]:
    """A note for each system whose slot F1 covers fewer utterances than its intent accuracy
    (gold without slots: ``score-wer`` scores the intent only)."""
    notes = []
    for name, system in exps.systems.items():
        e = results.get(name, {}).get(set_name)
        if not e or e.get("slot_utterances") is None or not e.get("nlu_utterances"):
            continue
        if e["slot_utterances"] < e["nlu_utterances"]:
            notes.append(
                f"Slot F1 of {system.label} on {set_name} is over {e['slot_utterances']} of "
                f"{e['nlu_utterances']} utterances: the gold of the others has no slots "
                "(they count for intent accuracy only)."
            )
    return ["", *notes] if notes else []


def metrics_table_md(results: dict, exps: Experiments, set_name: str) -> list[str]:
    """Every system's metrics on one set ("not run" rows for a system without results)."""
    md = [
        f"## {set_name}",
        "",
        "| system | " + " | ".join(METRIC_NAMES.values()) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for name, system in exps.systems.items():
        entry = results.get(name, {}).get(set_name)
        cells = (
            ["not run"] * len(METRIC_NAMES)
            if entry is None
            else [_cell(entry[m]) for m in METRIC_NAMES]
        )
        md.append(f"| {system.label} | " + " | ".join(cells) + " |")
    share = next(
        (results[n][set_name]["rare_share"]["value"] for n in results if set_name in results[n]),
        None,
    )
    if share is not None:
        md += ["", f"Rare-token share of {set_name} references: {share:.1f}%."]
    return md + slot_coverage_md(results, exps, set_name) + slurp_table_md(results, exps, set_name)


#: What a further set is, by name (:func:`cross_set_md`); any other set gets a generic line.
SET_NOTES = {
    "test_unseen_engine": "holds the {eval_set} sentences rendered by TTS engines never used in "
    "training",
}


def _relative(value: float | None, base: float | None) -> str:
    """``value`` against ``base`` in percent (``n/a`` if either is missing or ``base`` is 0)."""
    if value is None or not base:
        return "n/a"
    return f"{100 * (value - base) / base:+.1f}%"


def cross_set_md(results: dict, exps: Experiments) -> list[str]:
    """Each set beyond ``tune_set`` and ``eval_set`` beside ``eval_set``: WER, rare-word WER and
    the relative WER change against the first pass on each of the two, for every system scored
    on both (seeded systems: seed mean ± sd)."""
    ev, fp = exps.eval_set, exps.first_pass
    md: list[str] = []
    for other in exps.sets:
        if other in (exps.tune_set, ev):
            continue
        names = [n for n in exps.systems if all(s in results.get(n, {}) for s in (ev, other))]
        if not names:
            continue
        what = SET_NOTES.get(other, "is a further set").format(eval_set=ev)
        md += [
            f"## {ev} vs {other}",
            "",
            f"{other} {what}; the same systems, with the weights tuned on {exps.tune_set}, on "
            f"both sets (intervals: the per-set tables above). Δ WER: relative change against "
            f"{exps.label(fp)} on the same set.",
            "",
            f"| system | WER {ev} | WER {other} | rare-word WER {ev} | rare-word WER {other} | "
            f"Δ WER vs first pass {ev} | Δ WER vs first pass {other} |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in names:
            r = results[n]
            cells = [_cell(r[s][m], ci95=False) for m in ("wer", "rare_wer") for s in (ev, other)]
            for s in (ev, other):
                base = (results.get(fp, {}).get(s) or {}).get("wer") or {}
                cells.append(
                    "" if n == fp else _relative(r[s]["wer"].get("value"), base.get("value"))
                )
            md.append(f"| {exps.label(n)} | " + " | ".join(cells) + " |")
        md.append("")
    return md


SLURP_NAMES = {
    "scenario_acc": "scenario acc",
    "action_acc": "action acc",
    "span_f1": "span F1",
    "slu_f1_word": "SLU-F1 word",
    "slu_f1_char": "SLU-F1 char",
    "slu_f1": "SLU-F1",
}


def slurp_table_md(results: dict, exps: Experiments, set_name: str) -> list[str]:
    """SLURP's own SLU metrics of the chosen hypotheses (``score-wer --slu-metrics slurp``), if
    the systems were scored with them."""
    rows = []
    for name, system in exps.systems.items():
        entry = results.get(name, {}).get(set_name)
        if entry and "slurp" in entry:
            cells = [_cell(entry["slurp"].get(k)) for k in SLURP_NAMES]
            rows.append(f"| {system.label} | " + " | ".join(cells) + " |")
    if not rows:
        return [""]
    return [
        "",
        f"SLURP's SLU metrics on {set_name} (its evaluation's definitions, rescoring/slurp_metrics.py):",
        "",
        "| system | " + " | ".join(SLURP_NAMES.values()) + " |",
        "|---|" + "---|" * len(SLURP_NAMES),
        *rows,
        "",
    ]


def _per_seed(entry: dict, key: str) -> list[tuple[str, dict]]:
    """(row suffix, weights) of a system's ``tuned`` / ``loglinear``: one row, or one per seed."""
    if entry.get(key):
        return [("", entry[key])]
    per = entry.get(key + "_per_seed") or {}
    return [(f", seed {k}", v) for k, v in per.items() if v]


def tuned_md(results: dict, exps: Experiments) -> list[str]:
    """The weights each tuned system chose, and the tuning-set WER they gave."""
    s = exps.tune_set
    md = [
        f"## Tuned weights ({s})",
        "",
        f"| system | scorer | λ | β | {s} WER | {s} WER first pass |",
        "|---|---|---|---|---|---|",
    ]
    for name, system in exps.systems.items():
        for seed, t in _per_seed(results.get(name, {}), "tuned"):
            w = Weights.of(t["weights"])
            md.append(
                f"| {system.label}{seed} | {t['scorer']} | {w.lm_scale:g} | "
                f"{w.word_bonus:g} | {t['wer']:.2f} | {t['wer_first_pass']:.2f} |"
            )
    md.append("")
    rows = []
    for name, system in exps.systems.items():
        for seed, p in _per_seed(results.get(name, {}), "loglinear"):
            weights = ", ".join(f"{k} {v:g}" for k, v in p["weights"].items() if k != "am")
            cv = p.get("cv") or {}
            held = cv.get("pooled_heldout_wer")
            held_s = (
                "n/a"
                if held is None
                else f"{held:.2f} ({cv.get('pooled_heldout_wer_init', 0):.2f})"
            )
            mwer = p.get("mwer")
            tuner = "coordinate ascent" if mwer is None else f"mwer, l2 {mwer['l2']}"
            rows.append(
                f"| {system.label}{seed} | {tuner} | {weights} | {p['wer']:.2f} | "
                f"{p['wer_first_pass']:.2f} | {held_s} |"
            )
    if rows:
        md += [
            f"Log-linear decoders (rescoring/loglinear.py; am weight 1; tuned on {s}: coordinate "
            "ascent on WER, or mwer = L2-regularised minimum expected WER; held-out: pooled over "
            f"the cross-validation folds of {s}, in brackets the λ/β-only start):",
            "",
            f"| system | tuner | weights | {s} WER | {s} WER first pass | "
            f"{s} held-out WER (start) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    return md


def paired_md(tests: list[dict], exps: Experiments) -> list[str]:
    """The matrix's comparisons (B against A) as one table."""
    if not tests:
        return []
    note = f" {exps.comparison_note}" if exps.comparison_note else ""
    md = [
        f"## Paired bootstrap ({exps.eval_set})",
        "",
        "p = share of resamples in which B is *not* better than A (small p: B is better); "
        "Δ = B - A in points with its 95% interval over the same resamples." + note,
        "",
        "| A | B | metric | A | B | relative change | Δ 95% CI | p (B not better) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        rel = "n/a" if t["relative_change"] is None else f"{t['relative_change']:+.1f}%"
        md.append(
            f"| {exps.label(t['a'])} | {exps.label(t['b'])} | {METRIC_NAMES[t['metric']]} | "
            f"{_num(t['a_value'])} | {_num(t['b_value'])} | {rel} | {_ci(t['diff_ci95'])} | "
            f"{_num(t['p_b_better'], '.3f')} |"
        )
    return md + [""]


def breakdown_systems(exps: Experiments) -> list[str]:
    """The per-intent table's columns: the first pass, the targets' baselines, the headline and
    the oracle, each once, in that order."""
    names = [exps.first_pass, *(t.against for t in exps.targets), exps.headline, exps.oracle]
    return list(dict.fromkeys(names))


def per_intent_md(results: dict, exps: Experiments) -> list[str]:
    """WER / rare-word WER per gold intent on the evaluation set."""
    set_name = exps.eval_set
    names = [n for n in breakdown_systems(exps) if n in results]
    per = {n: results[n].get(set_name, {}).get("per_intent") or {} for n in names}
    intents = sorted({i for p in per.values() for i in p})
    if not intents:
        return []

    def cell(n: str, i: str, k: str) -> str:
        v = per[n].get(i, {}).get(k)
        return "n/a" if v is None else f"{v:.1f}"

    head = " | ".join(f"{exps.label(n)} WER / rare" for n in names)
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


def glob(pattern: str) -> list[Path]:
    if Path(pattern).is_absolute():
        return sorted(Path("/").glob(pattern.lstrip("/")))
    return sorted(Path().glob(pattern))


def commands_md(cmds: list[tuple[str, Path]]) -> list[str]:
    """Each ``(title, cmd.sh)`` as a bash block."""
    cmds = [(n, p) for n, p in cmds if p.is_file()]
    if not cmds:
        return []
    md = ["## Exact commands", ""]
    for name, p in cmds:
        md += [f"### {name}", "", "```bash", read_text(p).rstrip(), "```", ""]
    return md


def configs_md(patterns: tuple[str, ...]) -> list[str]:
    """Every option an experiment ran with, from its config.json (model + training)."""
    files = [p for pattern in patterns for p in glob(pattern) if p.is_file()]
    if not files:
        return []
    md = ["## Resolved configurations", ""]
    for p in files:
        obj = read_json(p)
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


def seeds_md(results: dict, exps: Experiments) -> list[str]:
    """Per-seed values of every seeded system (``{seed}`` in its LM paths) on every set."""
    seeded = [n for n in exps.systems if results.get(n, {}).get("lm_seeds")]
    if not seeded:
        return []
    keys = ("wer", "rare_wer", "intent_acc", "slot_f1")
    seeds = ", ".join(map(str, exps.seeds))
    intro = (
        f"Each system below was trained with {len(exps.seeds)} LM seeds ({seeds}); the tables "
        "above give its seed mean ± sample sd, and its interval resamples seeds and utterances."
        if len(exps.seeds) > 1
        else f"Each system below was trained with one LM seed ({seeds}): no spread over seeds "
        "can be given (sd n/a), and its interval resamples utterances only."
    )
    md = [
        "## LM seeds",
        "",
        intro + " Per seed:",
        "",
        "| system | set | seed | " + " | ".join(METRIC_NAMES[k] for k in keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for n in seeded:
        r = results[n]
        for s in exps.sets:
            if s not in r:
                continue
            for seed in r["lm_seeds"]:
                cells = [_num((r[s][k].get("seeds") or {}).get(str(seed))) for k in keys]
                md.append(f"| {exps.label(n)} | {s} | {seed} | " + " | ".join(cells) + " |")
            spread = [
                "n/a"
                if r[s][k].get("sd") is None
                else f"{r[s][k]['value']:.2f} ± {r[s][k]['sd']:.2f}"
                for k in keys
            ]
            md.append(f"| {exps.label(n)} | {s} | mean ± sd | " + " | ".join(spread) + " |")
    return md + [""]


def per_engine_md(results: dict, exps: Experiments) -> list[str]:
    """WER / rare-word WER per TTS engine of the gold (``custom.tts_engine``), every system, on
    every set whose audio records its engine (seeded systems: seed means)."""
    md: list[str] = []
    for s in exps.sets:
        names = [n for n in exps.systems if (results.get(n, {}).get(s) or {}).get("per_engine")]
        if not names:
            continue
        engines = sorted({e for n in names for e in results[n][s]["per_engine"]})
        head = " | ".join(f"{e} WER / rare" for e in engines)
        md += [
            f"## Per TTS engine ({s})",
            "",
            f"| system | {head} |",
            "|---|" + "---|" * len(engines),
        ]
        for n in names:
            per = results[n][s]["per_engine"]
            cells = [
                f"{_num(per.get(e, {}).get('wer'), '.1f')} / {_num(per.get(e, {}).get('rare_wer'), '.1f')}"
                for e in engines
            ]
            md.append(f"| {exps.label(n)} | " + " | ".join(cells) + " |")
        utts = {
            e: next(
                results[n][s]["per_engine"][e]["utterances"]
                for n in names
                if e in results[n][s]["per_engine"]
            )
            for e in engines
        }
        md += [
            "",
            "Utterances per engine: " + ", ".join(f"{e} {k}" for e, k in utts.items()) + ".",
            "",
        ]
    return md
