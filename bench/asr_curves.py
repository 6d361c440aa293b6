"""Compare RNN-T training runs at the same steps: the greedy WER of dev and of each monitored set
(``train-asr --monitor-cuts``, e.g. the held-out TTS engine) at the checks every run has.

Reads each run's ``log/valid.csv`` and ``log/monitor.csv`` (``rescoring.report_curve``) and prints
a markdown table (one row per common step, one column per run and set) and the mean of each
run's last ``--last`` common checks (a single check moves by a few points, so compare means).
Runs that differ only in their training data (the same seed, options and learning-rate schedule,
a function of the step alone) can be compared this way, e.g. the default preset against
``conf/one_train_engine.sh``: issue 13's held-out-engine WER against the number of training
engines.

Usage:
    python bench/asr_curves.py --run "2 engines=exp/asr/conformer_rnnt/log" \
        --run "1 engine=../one_engine/exp/asr/conformer_rnnt/log" --last 3 --out curves.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from _common import write_report

from common.io import InputError
from rescoring.report_curve import read_learning_curve


def _run_arg(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=LOG_DIR, got {text!r}")
    return label, Path(path)


def compare(runs: list[tuple[str, Path]], last: int) -> dict:
    """Per common step and set, each run's greedy WER; per set, the mean of the last ``last``
    common steps. Raises InputError when the runs share no check or no set."""
    curves = {label: read_learning_curve(log) for label, log in runs}
    tables = {label: {p.step: p.wer for p in c.points} for label, c in curves.items()}
    sets = [
        s for s in next(iter(curves.values())).sets if all(s in c.sets for c in curves.values())
    ]
    if not sets:
        raise InputError(f"the runs {', '.join(curves)} monitor no set in common")
    steps = sorted(
        set.intersection(
            *({st for st, w in t.items() if all(s in w for s in sets)} for t in tables.values())
        )
    )
    if not steps:
        raise InputError(f"the runs {', '.join(curves)} have no check at a common step")
    tail = steps[-last:]
    return {
        "runs": {label: str(log) for label, log in runs},
        "sets": sets,
        "steps": steps,
        "wer": {
            label: {s: [round(t[st][s], 2) for st in steps] for s in sets}
            for label, t in tables.items()
        },
        "mean_last": {
            "steps": tail,
            **{
                label: {s: round(math.fsum(t[st][s] for st in tail) / len(tail), 2) for s in sets}
                for label, t in tables.items()
            },
        },
    }


def to_markdown(report: dict) -> str:
    labels, sets = list(report["runs"]), report["sets"]
    head = [f"{s} WER, {label}" for s in sets for label in labels]
    md = ["| step | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for i, step in enumerate(report["steps"]):
        cells = [f"{report['wer'][label][s][i]:.2f}" for s in sets for label in labels]
        md.append(f"| {step} | " + " | ".join(cells) + " |")
    tail = report["mean_last"]
    cells = [f"**{tail[label][s]:.2f}**" for s in sets for label in labels]
    md.append(f"| mean of steps {', '.join(map(str, tail['steps']))} | " + " | ".join(cells) + " |")
    return "\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--run",
        type=_run_arg,
        action="append",
        required=True,
        help="LABEL=LOG_DIR: a train-asr log folder (valid.csv, monitor.csv); give two or more",
    )
    p.add_argument("--last", type=int, default=3, help="mean over the last N common checks")
    p.add_argument("--out", type=Path, default=None, help="also write the report (JSON) here")
    args = p.parse_args()
    if len(args.run) < 2 or args.last < 1:
        p.error("give at least two --run and --last >= 1")
    if len({label for label, _ in args.run}) != len(args.run):
        p.error("each --run needs its own label")
    try:
        report = compare(args.run, args.last)
    except InputError as e:
        sys.exit(f"asr_curves: {e}")
    write_report(report, args.out)
    print(to_markdown(report))


if __name__ == "__main__":
    main()
