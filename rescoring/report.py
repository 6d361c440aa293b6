"""Write a recipe's RESULTS.md, results.json and plots from the scored systems of its matrix.

The recipe's experiment matrix (``--systems``, :mod:`rescoring.experiments`) names the systems,
their labels, the headline system, the comparisons (paired bootstrap) and the targets; this
module knows none of them. For every system folder ``<rescore-dir>/<system>/`` it reads
``metrics-{set}.json`` and ``per-utt-{set}.jsonl.gz`` (``score-wer``), ``tuned.json`` and
``sweep-{tune_set}.tsv`` (``tune-rescoring``), and ``cmd.sh`` (the exact commands, written by
``rescore-systems``) through :mod:`rescoring.results`, which verifies every file against its set
manifest. A system that was not run is listed as "not run". ``--done-dir`` adds the recipe's
stage-time table, made from its ``.done`` markers by :func:`common.stages.stage_table`, and the
time of the system runs (their ``system.json``), of it the runs done before the parallel stage
groups ended (early rescoring, in no marker);
``--asr-log-dir`` the RNN-T's learning curve (:mod:`rescoring.report_curve`).

Usage:
    make-report --systems conf/systems.toml --rescore-dir exp/rescore --out RESULTS.md \\
        --title "<corpus> (default preset)" --cmd-files 'exp/asr/*/cmd.sh' 'exp/lm/*/cmd.sh' \\
        --done-dir .done --parallel 6-8,17-21 9-16 --decode-dir exp/asr/<model>/decode \
        --asr-log-dir exp/asr/<model>/log

OUTPUTS:
    RESULTS.md, results.json (system -> set -> metric -> {value, ci95}; the paired tests), and
    beside them plots/lambda-sweep-{tune_set}.png, plots/{eval_set}-wer.png (and
    plots/asr-learning-curve.png with --asr-log-dir)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from common.cli import run_cli
from common.io import InputError, atomic_write
from common.stages import (
    FINISHED_AT_FORMAT,
    parallel_end,
    parse_ranges,
    stage_records,
    stage_table,
)
from rescoring.experiments import load_experiments
from rescoring.outputs import check_writable
from rescoring.report_curve import curve_md, plot_curve, read_learning_curve
from rescoring.report_plots import plot
from rescoring.report_tables import (
    commands_md,
    configs_md,
    cross_set_md,
    glob,
    metrics_table_md,
    paired_md,
    per_engine_md,
    per_intent_md,
    read_text,
    seeds_md,
    targets_md,
    tuned_md,
)
from rescoring.results import PairedTests, collect


@dataclass
class ReportConfig:
    systems: Path | None = field(
        default=None,
        metadata={
            "help": "the recipe's experiment matrix (systems, labels, headline, comparisons, "
            "targets; rescoring/experiments.py); required"
        },
    )
    lm_seeds: tuple[int, ...] = field(
        default=(),
        metadata={
            "help": "the LM seeds of the systems whose LM paths name {seed} (the recipe's "
            "lm_seeds); default: the matrix's seeds = [...]"
        },
    )
    sets: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "the sets to report (e.g. dev test test_unseen_engine); must include the "
            "matrix's tune_set and eval_set; default: the matrix's sets = [...]"
        },
    )
    exclude_systems: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "systems of the matrix left out of this run, with the comparisons, targets "
            "and limits naming them (not the headline, first pass or oracle)"
        },
    )
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
    done_dir: Path | None = field(
        default=None,
        metadata={"help": "the recipe's .done folder: adds the stage-time table (stage-marker)"},
    )
    parallel: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "stage ranges that ran side by side, e.g. 6-8,17-21 9-16 (with --done-dir)"
        },
    )
    decode_dir: Path | None = field(
        default=None,
        metadata={
            "help": "the decode-asr folder of the n-best lists: its decode-summary-*.json are "
            "named under the stage times (with --done-dir)"
        },
    )
    asr_log_dir: Path | None = field(
        default=None,
        metadata={
            "help": "train-asr's log folder (log/valid.csv, log/monitor.csv): adds the RNN-T "
            "learning curve, greedy WER of dev and of each --monitor-cuts set (e.g. the "
            "held-out TTS engine) against steps and training minutes, table and plot"
        },
    )
    extra_md: tuple[Path, ...] = field(
        default=(),
        metadata={"help": "markdown files appended as further sections (e.g. diagnostics)"},
    )


def stages_md(cfg: ReportConfig) -> list[str]:
    """The stage-time table of the recipe's ``.done`` markers (and where decoding is summed up)."""
    if cfg.done_dir is None:
        return []
    if not cfg.done_dir.is_dir():
        raise InputError(f"{cfg.done_dir}: --done-dir is not a folder (the recipe's .done markers)")
    parallel = parse_ranges(list(cfg.parallel))
    recs = stage_records(cfg.done_dir)  # read once, for the table and the system runs
    block = stage_table(recs, parallel)
    runs = system_runs(cfg.rescore_dir)
    if runs:
        block += "\n" + system_runs_md(runs, cfg.rescore_dir, parallel_end(recs, parallel))
    if cfg.decode_dir is not None:
        block += f"\nASR decoding summary: see `{cfg.decode_dir}/decode-summary-*.json`.\n"
    return [block.rstrip(), ""]


def system_runs(rescore_dir: Path) -> list[tuple[float, datetime | None]]:
    """(seconds, finish time or None) of every finished ``rescore-systems`` run (its
    ``system.json``) under ``rescore_dir``; an unreadable one is left out."""
    runs = []
    for path in sorted(rescore_dir.rglob("system.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            secs = float(rec["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        try:
            end = datetime.strptime(rec.get("finished_at", ""), FINISHED_AT_FORMAT)
        except (TypeError, ValueError):
            end = None
        runs.append((secs, end))
    return runs


def system_runs_md(
    runs: list[tuple[float, datetime | None]], rescore_dir: Path, parallel_end: datetime | None
) -> str:
    """The runs' own time, and how much of it was done before the parallel groups ended (the
    recipe's early rescoring, which no stage marker times)."""
    total = sum(s for s, _ in runs)
    text = (
        f"System runs of `rescore-systems` (a `system.json` each, under `{rescore_dir}`): "
        f"**{len(runs)}**, {total:.0f} s by their own clocks."
    )
    if parallel_end is None or all(end is None for _, end in runs):
        return text + (
            " Their finish times or the parallel groups' are not recorded, so runs done early "
            "cannot be told from the rescoring stage's.\n"
        )
    early = [s for s, end in runs if end is not None and end <= parallel_end]
    if not early:
        return text + " None ended before the parallel groups did: all are the rescoring stage's.\n"
    return text + (
        f" {len(early)} of them ({sum(early):.0f} s) ended before the parallel groups did: they "
        "ran early, on the core of the group that had finished while the other's stages still "
        "ran (the recipe's `early_rescore`), so their time is in no stage's seconds above; the other "
        f"{len(runs) - len(early)} ran in the rescoring stage.\n"
    )


def make_report(cfg: ReportConfig) -> dict:
    if cfg.systems is None:
        raise InputError("--systems is required: the recipe's experiment matrix (systems.toml)")
    if cfg.done_dir is None and (cfg.parallel or cfg.decode_dir is not None):
        raise InputError("--parallel and --decode-dir belong to the stage table: add --done-dir")
    exps = load_experiments(cfg.systems, cfg.lm_seeds, sets=cfg.sets, exclude=cfg.exclude_systems)
    if not cfg.rescore_dir.is_dir():
        raise InputError(f"{cfg.rescore_dir}: no such folder (run the rescoring stages first)")
    check_writable(cfg.out.parent)
    curve = None if cfg.asr_log_dir is None else read_learning_curve(cfg.asr_log_dir)
    results = collect(cfg.rescore_dir, exps)
    pairs = PairedTests(cfg.rescore_dir, results, exps.eval_set)
    tests = pairs.comparisons(exps)
    plots = plot(cfg.rescore_dir, results, exps, cfg.out.parent / "plots")
    if curve is not None:
        plots.append(plot_curve(curve, cfg.out.parent / "plots"))
    md = [
        f"# {cfg.title}",
        "",
        "Generated by `make-report`; every number is measured by the recipe (values in %, "
        f"95% bootstrap intervals over utterances in brackets). λ and β are tuned on "
        f"{exps.tune_set} only."
        + (
            " Systems trained with several LM seeds show the seed mean ± sd; their interval and "
            "their paired tests resample seeds and utterances."
            if any(results.get(n, {}).get("lm_seeds") for n in exps.systems)
            else ""
        ),
        "",
    ]
    md += targets_md(results, pairs, exps)
    for s in exps.sets:
        md += metrics_table_md(results, exps, s)
    md += cross_set_md(results, exps)
    md += seeds_md(results, exps)
    md += tuned_md(results, exps)
    md += paired_md(tests, exps)
    md += per_intent_md(results, exps)
    md += per_engine_md(results, exps)
    if curve is not None:
        md += curve_md(curve)
    if plots:
        md += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    cmds = [(str(p.parent), p) for pattern in cfg.cmd_files for p in glob(pattern) if p.is_file()]
    cmds += [(s.label, cfg.rescore_dir / name / "cmd.sh") for name, s in exps.systems.items()]
    md += commands_md(cmds)
    md += configs_md(cfg.config_files)
    md += stages_md(cfg)
    for extra in cfg.extra_md:
        if Path(extra).is_file():
            md += [read_text(extra).rstrip(), ""]
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
