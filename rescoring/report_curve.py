"""The RNN-T learning curve of RESULTS.md: greedy WER of dev and of every ``--monitor-cuts`` set
(e.g. the held-out TTS engine) against training steps and minutes, from ``train-asr``'s logs.

``train-asr`` writes ``log/valid.csv`` (step, epoch, lr, dev_loss, dev_greedy_wer, elapsed_s) at
every dev check (``dev_loss`` empty except at an epoch's end) and ``log/monitor.csv`` (step,
epoch, set, greedy_wer, elapsed_s) beside it when it has monitor sets. This module reads them
as plain CSV (rescoring imports no ASR code).

Usage:
    curve = read_learning_curve(Path("exp/asr/conformer_rnnt/log"))
    md = curve_md(curve)                          # the "RNN-T learning curve" section
    png = plot_curve(curve, Path("plots"))        # plots/asr-learning-curve.png
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from common.io import InputError

VALID_LOG, MONITOR_LOG = "valid.csv", "monitor.csv"


@dataclass
class CurvePoint:
    step: int
    minutes: float  # training wall time at the check (train-asr's elapsed_s / 60)
    dev_loss: float  # NaN at the checks without one (between epoch ends)
    wer: dict[str, float] = field(default_factory=dict)  # set -> greedy WER (%); "dev" first


@dataclass
class LearningCurve:
    log_dir: Path
    points: list[CurvePoint]

    @property
    def sets(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.points:
            seen.update(dict.fromkeys(p.wer))
        return list(seen)


def _rows(path: Path, need: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: no column {', '.join(missing)} (not a train-asr log?)")
        return list(enumerate(reader, start=2))


def _num(path: Path, lineno: int, row: dict[str, str], col: str, cast=float):
    try:
        value = cast(row[col])
    except (TypeError, ValueError):
        raise InputError(f"{path}:{lineno}: {col} {row.get(col)!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{path}:{lineno}: {col} is {value}")
    return value


def read_learning_curve(log_dir: Path) -> LearningCurve:
    """The dev checks of ``log_dir/valid.csv``, joined on the step with ``monitor.csv`` (if
    any). A monitor row at a step without a dev check (train-asr also monitors at each epoch's
    end) gets its own point, with the dev columns empty (NaN).

    Raises:
        InputError: naming the file (and line) when ``valid.csv`` is missing or empty, a column
            is missing, or a value is not a finite number.
    """
    valid = log_dir / VALID_LOG
    if not valid.is_file():
        raise InputError(f"{valid}: no such file (train-asr writes it at every dev check)")
    points: dict[int, CurvePoint] = {}
    for lineno, row in _rows(valid, ("step", "dev_loss", "dev_greedy_wer", "elapsed_s")):
        step = _num(valid, lineno, row, "step", int)
        # the checks every --valid-interval steps log the greedy WER only; the dev loss (all of
        # dev) is computed at each epoch's end
        loss = _num(valid, lineno, row, "dev_loss") if row["dev_loss"] != "" else math.nan
        p = CurvePoint(step, _num(valid, lineno, row, "elapsed_s") / 60, loss)
        p.wer["dev"] = _num(valid, lineno, row, "dev_greedy_wer")
        points[step] = p
    if not points:
        raise InputError(f"{valid}: no dev check logged yet")
    monitor = log_dir / MONITOR_LOG
    if monitor.is_file():
        for lineno, row in _rows(monitor, ("step", "set", "greedy_wer", "elapsed_s")):
            step = _num(monitor, lineno, row, "step", int)
            name = (row.get("set") or "").strip()
            if not name or name == "dev":
                raise InputError(f"{monitor}:{lineno}: set name {name!r} (empty, or 'dev')")
            p = points.get(step)
            if p is None:
                p = points[step] = CurvePoint(
                    step, _num(monitor, lineno, row, "elapsed_s") / 60, math.nan
                )
            p.wer[name] = _num(monitor, lineno, row, "greedy_wer")
    return LearningCurve(log_dir, [points[s] for s in sorted(points)])


def curve_md(curve: LearningCurve) -> list[str]:
    """The "RNN-T learning curve" section: one row per check, the best dev check marked."""
    sets = curve.sets
    dev = [p for p in curve.points if "dev" in p.wer]
    best = min(dev, key=lambda p: (p.wer["dev"], p.step)) if dev else None
    md = [
        "## RNN-T learning curve",
        "",
        f"Greedy WER (%) at `train-asr`'s checks, from `{curve.log_dir}/{VALID_LOG}`"
        + (f" and `{MONITOR_LOG}`" if len(sets) > 1 else "")
        + " (each set's first `--valid-wer-cuts` utterances, the model at that step; the "
        "systems above decode the averaged model with beam search, so their WERs are not "
        "these). The dev loss (all of dev) is computed at epoch ends only. Minutes are "
        "training time.",
        "",
        "| step | minutes | dev loss | " + " | ".join(f"{s} WER" for s in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for p in curve.points:
        cells = [
            "" if s not in p.wer else f"{p.wer[s]:.2f}" + (" *" if p is best and s == "dev" else "")
            for s in sets
        ]
        loss = "" if math.isnan(p.dev_loss) else f"{p.dev_loss:.3f}"
        md.append(f"| {p.step} | {p.minutes:.1f} | {loss} | " + " | ".join(cells) + " |")
    last = curve.points[-1]
    md += [""]
    if best is not None:
        md.append(f"\\* best dev check: step {best.step}, {best.wer['dev']:.2f}.")
    falls = []
    for s in sets:
        have = [p for p in curve.points if s in p.wer]
        if len(have) >= 2:
            a, b = have[-2], have[-1]
            falls.append(f"{s} {a.wer[s]:.2f} -> {b.wer[s]:.2f} (steps {a.step} -> {b.step})")
    if falls:
        md.append(
            f"Last two checks (training ended at step {last.step}, {last.minutes:.1f} min): "
            + "; ".join(falls)
            + "."
        )
    return md + [""]


def plot_curve(curve: LearningCurve, out_dir: Path) -> Path:
    """``out_dir/asr-learning-curve.png``: greedy WER of each set against training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in curve.sets:
        have = [p for p in curve.points if s in p.wer]
        ax.plot([p.minutes for p in have], [p.wer[s] for p in have], marker=".", label=s)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("greedy WER (%)")
    ax.set_title("RNN-T learning curve (train-asr checks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "asr-learning-curve.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
