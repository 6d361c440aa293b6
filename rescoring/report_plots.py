"""The plots of RESULTS.md: WER over the λ sweep (tuning set), WER and rare-word WER per system.

Usage:
    written = plot(rescore_dir, results, exps, out_dir)   # [out_dir/lambda-sweep-dev.png, ...]
"""

from __future__ import annotations

from pathlib import Path

from rescoring.experiments import Experiments
from rescoring.report_tables import METRIC_NAMES
from rescoring.results import read_sweep


def plot(rescore_dir: Path, results: dict, exps: Experiments, out_dir: Path) -> list[Path]:
    """Write ``lambda-sweep-{tune_set}.png`` (best β for each λ, every tuned system) and
    ``{eval_set}-wer.png`` (every system run on the evaluation set) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tune, ev = exps.tune_set, exps.eval_set
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    any_line = False
    for name in exps.rescoring_systems:
        seed = exps.seeds_of(name)[0]  # a seeded system: its first seed's sweep
        folder = rescore_dir / name if seed is None else rescore_dir / name / f"seed{seed}"
        p = folder / f"sweep-{tune}.tsv"
        if not p.is_file():
            continue
        best: dict[float, float] = {}
        for lam, _beta, wer in read_sweep(p, tune):
            best[lam] = min(best.get(lam, float("inf")), wer)
        xs = sorted(best)
        label = exps.label(name) + ("" if seed is None else f" (seed {seed})")
        ax.plot(xs, [best[x] for x in xs], marker=".", label=label)
        any_line = True
    if any_line:
        ax.set_xlabel("LM scale λ (best β for each λ)")
        ax.set_ylabel(f"{tune} WER (%)")
        ax.set_title(f"{tune.capitalize()} WER over the λ sweep")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / f"lambda-sweep-{tune}.png")
        fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    names = [n for n in exps.systems if n in results and ev in results[n]]
    if names:
        import numpy as np

        fig, ax = plt.subplots(figsize=(9, 4.5))
        x = np.arange(len(names))
        for k, (metric, off) in enumerate((("wer", -0.2), ("rare_wer", 0.2))):
            vals, lo, hi = [], [], []
            for n in names:
                c = results[n][ev][metric]
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
            x, [exps.label(n).lstrip("+ ") for n in names], rotation=20, ha="right", fontsize=8
        )
        ax.set_ylabel(f"{ev} error rate (%)")
        ax.set_title(
            f"{ev.capitalize()} WER and rare-word WER per system (95% bootstrap intervals)"
        )
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        written.append(out_dir / f"{ev}-wer.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
