"""Rescore and score every system of a recipe's experiment matrix (recipe stage 24).

For each system of ``--systems`` (:mod:`rescoring.experiments`), in declaration order, into
``<out-dir>/<system>/``:

* a system without LM (the first pass, the oracle): ``rescore-nbest --scorer none --lm-scale 0
  --word-bonus 0 --select <its select>`` on every set;
* a system with an LM: ``tune-rescoring`` on ``tune_set`` (the grid options below), then
  ``rescore-nbest --params tuned.json`` on every other set;
* then ``score-wer`` on every set (references, intents and slots from ``--gold``).

The NLU of the chosen hypothesis comes from the matrix's ``nlu_checkpoint``. Each step is the
entry point's own function called with the options of its stand-alone command, so the outputs
are those of running the commands one by one; ``cmd.sh`` lists those commands. ``system.json``
(written last) records the steps and the fingerprints (size, mtime) of their inputs: on a re-run
a system whose record matches and whose output sets all verify (:mod:`rescoring.outputs`) is
skipped, any other is run again.

A recipe that trains its LMs while the first pass has finished (or decodes while its LMs have
finished) can rescore early: with ``--ready-from .done`` only the systems (seeds) whose
checkpoints and n-best lists are all outputs of finished stages run, and ``--max-runs N`` stops
after N of them (one call per idle spell); a later call, or the full stage, skips what is
complete and does the rest. The files are those of one full run.

Usage:
    rescore-systems --systems conf/systems.toml --nbest-dir exp/asr/<model>/decode \\
        --gold 'data/manifests/<corpus>_nlu_{set}.jsonl.gz' --word-counts data/lang/word_counts.txt \\
        --threshold 5 --out-dir exp/rescore --lm-scale-min 0 --lm-scale-max 1.5 --lm-scale-step 0.05

OUTPUTS (in --out-dir/<system>/, or --out-dir/<system>/seed<N>/ for each seed of a system whose
LM paths name {seed}): the files of rescore-nbest, tune-rescoring and score-wer, and
    cmd.sh        the stand-alone command of every step, in order
    system.json   the steps and their inputs' fingerprints (the record a re-run compares), and
                  the run's own ``seconds`` and ``finished_at`` (local time, as stage markers)
and ``--out-dir/score-cache/`` (with ``--score-cache true``): the LM scores of every scored
sentence list and the NLU model's readings of every list the log-linear systems extract features
from (rescoring/scorers.py ``ScoreCache``), so that systems scoring the same n-best with the same
checkpoint (``lm`` and ``nlu_features``' LM feature of a seed; ``nlu_features`` and
``lm_features``, which read the same n-best with the same NLU model) run it once. It only
saves time: deleting it changes no result (a new list or checkpoint is a new entry, so it grows
over re-runs that change them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli import CMD_HEADER, add_dataclass_args, dataclass_from_args, run_cli
from common.io import InputError, atomic_write
from common.stages import FINISHED_AT_FORMAT, fingerprint, finished_outputs
from rescoring import features, loglinear, rescore, score, tune
from rescoring.experiments import Experiments, System, load_experiments
from rescoring.nbest import DEFAULT_MAX_HYPS
from rescoring.outputs import output_folder, verify_output
from rescoring.params import Grid
from rescoring.tune import GridOptions, check_grid

#: prog -> (config class, function): the entry points a system's steps call.
STEPS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "tune-rescoring": (tune.TuneConfig, tune.tune),
    "rescore-nbest": (rescore.RescoreConfig, rescore.rescore),
    "score-wer": (score.ScoreConfig, score.score),
    "extract-features": (features.ExtractConfig, features.extract),
    "tune-loglinear": (loglinear.TuneLoglinearConfig, loglinear.tune_loglinear),
    "rescore-loglinear": (loglinear.RescoreLoglinearConfig, loglinear.rescore_loglinear),
}
#: The grid options passed on to tune-rescoring (the bounds and steps ``tuned.json`` records).
GRID_OPTIONS = tuple(f.name for f in dataclasses.fields(Grid) if f.name != "points")


@dataclass
class SystemsConfig(GridOptions):
    systems: Path = field(
        default=Path("conf/systems.toml"),
        metadata={"help": "the recipe's experiment matrix (rescoring/experiments.py)"},
    )
    nbest_dir: Path | None = field(
        default=None,
        metadata={"help": "decode folder holding nbest-<set>.jsonl.gz for every set; required"},
    )
    gold: str = field(
        default="",
        metadata={
            "help": "NLU supervision manifest of each set, a path with {set} in it "
            "(e.g. 'data/manifests/nlu_{set}.jsonl.gz'); required"
        },
    )
    word_counts: Path = field(
        default=Path("data/lang/word_counts.txt"),
        metadata={"help": "ASR training word counts (rare-word rule)"},
    )
    threshold: int = field(
        default=5, metadata={"help": "K: fewer than K training occurrences = rare"}
    )
    slu_metrics: str = field(
        default="snips",
        metadata={
            "help": "score-wer --slu-metrics: snips (intent acc, slot F1) or slurp (+ SLURP's)"
        },
    )
    out_dir: Path = field(
        default=Path("exp/rescore"),
        metadata={"help": "one folder per system inside (locked for the run)"},
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
            "help": "the sets to rescore and score (e.g. dev test test_unseen_engine); must "
            "include the matrix's tune_set and eval_set; default: the matrix's sets = [...]"
        },
    )
    exclude_systems: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "systems of the matrix left out of this run, with the comparisons, targets "
            "and limits naming them (not the headline, first pass or oracle)"
        },
    )
    jobs: int = field(
        default=1,
        metadata={
            "help": "systems (and seeds of a seeded system) rescored at once, each in its own "
            "process with one torch thread; 1: one after another in this process"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "LM batch size"})
    score_cache: bool = field(
        default=True,
        metadata={
            "help": "steps reuse LM scores through <out-dir>/score-cache (the same sentence list, "
            "checkpoint, batch size and threads: the same floats)"
        },
    )
    max_hyps: int = field(
        default=DEFAULT_MAX_HYPS,
        metadata={"help": "most hypotheses per utterance; an utterance with more is an error"},
    )
    ready_from: Path | None = field(
        default=None,
        metadata={
            "help": "a folder of recipe stage markers (.done): only the systems (seeds) whose "
            "checkpoints, n-best lists and lexicon folder are all outputs of a finished stage "
            "run now, the others are left for a later run (logged); the recipe rescores "
            "finished systems this way while later LMs train or later first passes decode"
        },
    )
    max_runs: int = field(
        default=0,
        metadata={
            "help": "stop after running this many systems (seeds of a seeded system count one "
            "each; complete ones are skipped and do not count); 0: no limit"
        },
    )


@dataclass
class Step:
    """One entry-point call: ``prog`` with the options ``argv`` of its stand-alone command."""

    prog: str
    argv: list[str]

    def command(self) -> str:
        return shlex.join([self.prog, *self.argv])

    def run(self) -> Any:
        cls, fn = STEPS[self.prog]
        parser = argparse.ArgumentParser(prog=self.prog)
        add_dataclass_args(parser, cls)
        return fn(dataclass_from_args(cls, parser.parse_args(self.argv)))


def _num(v: float) -> str:
    """``v`` as a command-line value that parses back to exactly ``v`` (``0``, ``0.05``)."""
    short = f"{v:g}"
    return short if float(short) == v else repr(v)


def gold_path(cfg: SystemsConfig, set_name: str) -> Path:
    return Path(cfg.gold.replace("{set}", set_name))


def nbest_path(cfg: SystemsConfig, set_name: str, system: System | None = None) -> Path:
    """The n-best list of ``set_name`` a system rescores: in its own ``nbest_dir`` if the
    matrix gives one, else in ``--nbest-dir``."""
    if system is not None and system.nbest_dir is not None:
        return Path(system.nbest_dir) / f"nbest-{set_name}.jsonl.gz"
    assert cfg.nbest_dir is not None
    return cfg.nbest_dir / f"nbest-{set_name}.jsonl.gz"


def seed_folder(out_dir: Path, name: str, seed: int | None) -> Path:
    """Where one run of a system writes: ``<out>/<system>``, or ``<out>/<system>/seed<N>`` for
    each seed of a seeded system (``{seed}`` in its LM paths)."""
    return out_dir / name if seed is None else out_dir / name / f"seed{seed}"


def plan_steps(
    cfg: SystemsConfig, exps: Experiments, system: System, folder: Path | None = None
) -> list[Step]:
    """The steps of one system (one seed of a seeded one: ``system.for_seed(N)`` and its
    ``folder``), in order (module docstring)."""
    d = str(folder if folder is not None else cfg.out_dir / system.name)
    nlu = ["--nlu-checkpoint", exps.nlu_checkpoint] if exps.nlu_checkpoint else []
    run_opts = []
    if cfg.batch_size != SystemsConfig.batch_size:
        run_opts += ["--batch-size", str(cfg.batch_size)]
    if cfg.max_hyps != DEFAULT_MAX_HYPS:
        run_opts += ["--max-hyps", str(cfg.max_hyps)]
    # the steps that run an LM reuse its scores through the cache
    cache = ["--score-cache", str(cfg.out_dir / "score-cache")] if cfg.score_cache else []
    steps = []
    if system.kind == "loglinear":
        steps += _loglinear_steps(cfg, exps, system, d, nlu, [*run_opts, *cache])
    elif system.rescored:
        grid = [
            a for k in GRID_OPTIONS for a in (f"--{k.replace('_', '-')}", _num(getattr(cfg, k)))
        ]
        if cfg.max_grid_points != SystemsConfig.max_grid_points:
            grid += ["--max-grid-points", str(cfg.max_grid_points)]
        steps.append(
            Step(
                "tune-rescoring",
                ["--nbest", str(nbest_path(cfg, exps.tune_set, system)), "--scorer", "nlm"]
                + ["--lm-checkpoint", str(system.lm_checkpoint), *nlu, "--out-dir", d]
                + ["--set-name", exps.tune_set, *grid, *run_opts, *cache],
            )
        )
        for s in exps.sets:
            if s != exps.tune_set:
                steps.append(
                    Step(
                        "rescore-nbest",
                        ["--nbest", str(nbest_path(cfg, s, system)), "--params", f"{d}/tuned.json"]
                        + ["--out-dir", d, "--set-name", s, *run_opts, *cache],
                    )
                )
    else:
        for s in exps.sets:
            steps.append(
                Step(
                    "rescore-nbest",
                    [
                        "--nbest",
                        str(nbest_path(cfg, s, system)),
                        "--scorer",
                        "none",
                        "--lm-scale",
                        "0",
                    ]
                    + ["--word-bonus", "0", "--select", system.select, *nlu, "--out-dir", d]
                    + ["--set-name", s, *run_opts],
                )
            )
    for s in exps.sets:
        steps.append(
            Step(
                "score-wer",
                ["--hyps", f"{d}/onebest-{s}.jsonl.gz", "--gold", str(gold_path(cfg, s))]
                + ["--word-counts", str(cfg.word_counts), "--threshold", str(cfg.threshold)]
                + ["--out-dir", d, "--set-name", s, "--system", system.name]
                + ([] if cfg.slu_metrics == "snips" else ["--slu-metrics", cfg.slu_metrics]),
            )
        )
    return steps


def _loglinear_steps(
    cfg: SystemsConfig, exps: Experiments, system: System, d: str, nlu: list[str], run_opts
) -> list[Step]:
    """extract-features on every set, tune-loglinear on the tune set, rescore-loglinear on
    every set (rescoring/loglinear.py)."""
    assert system.feature_lms
    lms = [f"{k}={v}" for k, v in system.feature_lms.items()]
    lex = ["--lexicon-dir", system.lexicon_dir] if system.lexicon_dir else []
    batch = (
        ["--batch-size", str(cfg.batch_size)] if cfg.batch_size != SystemsConfig.batch_size else []
    )
    nlu_feats = ["--nlu-checkpoint", system.nlu_features_from] if system.nlu_features_from else nlu
    steps = [
        Step(
            "extract-features",
            ["--nbest", str(nbest_path(cfg, s, system)), "--lm", *lms, *nlu_feats, *lex]
            + ["--out", f"{d}/features-{s}.jsonl.gz", *run_opts],
        )
        for s in exps.sets
    ]
    steps.append(
        Step(
            "tune-loglinear",
            ["--features-file", f"{d}/features-{exps.tune_set}.jsonl.gz", "--out"]
            + [f"{d}/loglinear.json", "--set-name", exps.tune_set, "--folds", str(system.folds)]
            + ["--objective", system.objective]
            + (["--features", *system.features] if system.features else []),
        )
    )
    steps += [
        Step(
            "rescore-loglinear",
            ["--features-file", f"{d}/features-{s}.jsonl.gz", "--weights", f"{d}/loglinear.json"]
            + ["--out-dir", d, "--set-name", s, *nlu, *batch],
        )
        for s in exps.sets
    ]
    return steps


def system_inputs(cfg: SystemsConfig, exps: Experiments, system: System) -> list[Path]:
    """Every file a system's steps read (their fingerprints decide whether it is re-run)."""
    paths = [nbest_path(cfg, s, system) for s in exps.sets]
    paths += [gold_path(cfg, s) for s in exps.sets]
    paths.append(cfg.word_counts)
    paths += [Path(p) for p in (system.lm_checkpoint, exps.nlu_checkpoint) if p]
    paths += [Path(system.nlu_features_from)] if system.nlu_features_from else []
    paths += [Path(p) for p in (system.feature_lms or {}).values()]
    if system.lexicon_dir:
        paths += sorted(Path(system.lexicon_dir).glob("slot-*.txt"))
    return paths


_OUTPUT_KINDS = (("onebest", ".jsonl.gz"), ("metrics", ".json"), ("per-utt", ".jsonl.gz"))


def system_outputs(folder: Path, exps: Experiments, system: System) -> list[Path]:
    """The outputs that must verify for a system to count as complete."""
    names = [f"{k}-{s}{ext}" for s in exps.sets for k, ext in _OUTPUT_KINDS]
    if system.kind == "loglinear":
        names += ["loglinear.json", *(f"features-{s}.jsonl.gz" for s in exps.sets)]
    elif system.rescored:
        names += ["tuned.json", f"sweep-{exps.tune_set}.tsv"]
    return [folder / n for n in names]


def plan_record(steps: list[Step], inputs: list[Path]) -> dict:
    """What ``system.json`` records and a re-run compares."""
    return {
        "steps": [[s.prog, *s.argv] for s in steps],
        "inputs": {str(p): fingerprint(p) for p in inputs},
    }


def is_complete(folder: Path, record: dict, outputs: list[Path]) -> bool:
    """The system was run with ``record`` and every output still verifies."""
    path = folder / "system.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict) or {k: old.get(k) for k in record} != record:
        return False
    try:
        for p in outputs:
            if not p.is_file():
                return False
            verify_output(p)
    except InputError as e:
        logging.info("%s: %s; running the system again", path, e)
        return False
    return True


def run_checkpoints(exps: Experiments, system: System) -> list[str]:
    """The checkpoints one run of a system reads (``system.for_seed(N)`` for a seeded one)."""
    paths = [system.lm_checkpoint, exps.nlu_checkpoint, system.nlu_features_from]
    paths += list((system.feature_lms or {}).values())
    return [str(p) for p in paths if p]


def split_ready(
    cfg: SystemsConfig,
    exps: Experiments,
    runs: list[tuple[System, int | None]],
    done_dir: Path,
) -> tuple[list[tuple[System, int | None]], list[tuple[System, int | None]]]:
    """``runs`` split into those whose checkpoints and n-best lists (every set) are all outputs
    of a finished stage (a marker in ``done_dir``), and whose lexicon folder (if any) holds one,
    and the others. Readiness only decides *when* a run is done: the fingerprints in
    ``system.json`` decide whether a finished run is still valid."""
    if not done_dir.is_dir():
        raise InputError(f"{done_dir}: no such folder (--ready-from: the stage markers)")
    finished = finished_outputs(done_dir)
    ready, waiting = [], []
    for system, seed in runs:
        paths = run_checkpoints(exps, system.for_seed(seed))
        paths += [str(nbest_path(cfg, s, system)) for s in exps.sets]
        ok = all(os.path.normpath(p) in finished for p in paths)
        if ok and system.lexicon_dir:  # a folder: ready once a finished stage wrote into it
            folder = os.path.normpath(system.lexicon_dir) + os.sep
            ok = any(o.startswith(folder) for o in finished)
        (ready if ok else waiting).append((system, seed))
    return ready, waiting


def check_inputs(
    cfg: SystemsConfig, exps: Experiments, runs: list[tuple[System, int | None]] | None = None
) -> None:
    """Every option and input file, before any work (errors name the file and the option);
    the checkpoints of ``runs`` only, if given (default: every run of the matrix)."""
    if cfg.nbest_dir is None:
        raise InputError("--nbest-dir is required (the decode folder of nbest-<set>.jsonl.gz)")
    if not cfg.gold:
        raise InputError("--gold is required (the NLU manifest of each set, with {set})")
    if "{set}" not in cfg.gold and len(exps.sets) > 1:
        raise InputError(
            f"--gold {cfg.gold!r}: needs {{set}} in it: the sets {list(exps.sets)} have one "
            "manifest each"
        )
    if cfg.threshold < 0:
        raise InputError(f"--threshold must be >= 0, got {cfg.threshold}")
    if cfg.slu_metrics not in score.SLU_METRICS:
        raise InputError(
            f"--slu-metrics must be one of {', '.join(score.SLU_METRICS)}, got {cfg.slu_metrics!r}"
        )
    rescore.check_run_options(cfg.batch_size, cfg.max_hyps)
    check_grid(cfg)
    if runs is None:
        runs = [(s, seed) for n, s in exps.systems.items() for seed in exps.seeds_of(n)]
    listed = {s.name: s for s, _ in runs}  # the n-best lists of the runs only (--ready-from)
    base = any(system.nbest_dir is None for system in listed.values())
    for s in exps.sets:
        checks = [(nbest_path(cfg, s), "--nbest-dir")] if base else []
        for p, what in (*checks, (gold_path(cfg, s), "--gold")):
            if not p.is_file():
                raise InputError(f"{p}: not found (set {s!r} of {exps.path}, from {what})")
        for name, system in listed.items():
            p = nbest_path(cfg, s, system)
            if system.nbest_dir is not None and not p.is_file():
                raise InputError(
                    f"{p}: not found (set {s!r}; {exps.path}: [systems.{name}] nbest_dir)"
                )
    if not cfg.word_counts.is_file():
        raise InputError(f"{cfg.word_counts}: not found (--word-counts)")
    named = [(s.name, s.for_seed(seed)) for s, seed in runs]
    ckpts = [(s.lm_checkpoint, f"[systems.{n}] lm_checkpoint") for n, s in named]
    ckpts += [
        (p, f"[systems.{n}] feature_lms.{k}")
        for n, s in named
        for k, p in (s.feature_lms or {}).items()
    ]
    ckpts += [(s.nlu_features_from, f"[systems.{n}] nlu_features_from") for n, s in named]
    for n, s in listed.items():
        if s.lexicon_dir and not Path(s.lexicon_dir).is_dir():
            raise InputError(
                f"{s.lexicon_dir}: no such folder ({exps.path}: [systems.{n}] lexicon_dir)"
            )
    nlu = [(exps.nlu_checkpoint, "nlu_checkpoint")] if runs else []
    for p, key in [*ckpts, *nlu]:
        if p and not Path(p).is_file():
            raise InputError(f"{p}: not found ({exps.path}: {key})")


def write_cmd(folder: Path, cfg: SystemsConfig, steps: list[Step]) -> None:
    """``cmd.sh``: where it ran, the run it was part of, and each step's stand-alone command."""
    with atomic_write(folder / "cmd.sh") as f:
        f.write(f"{CMD_HEADER}{os.getcwd()}\n")
        f.write(
            f"# (steps of rescore-systems --systems {cfg.systems} --out-dir {cfg.out_dir}; "
            "each line is the stand-alone equivalent)\n"
        )
        f.write("".join(s.command() + "\n" for s in steps))


def _run_one(cfg: SystemsConfig, exps: Experiments, system: System, folder: Path) -> bool:
    steps = plan_steps(cfg, exps, system, folder)
    record = plan_record(steps, system_inputs(cfg, exps, system))
    if is_complete(folder, record, system_outputs(folder, exps, system)):
        logging.info("System %s: complete and unchanged (%s), skipping", system.name, folder)
        return False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "system.json").unlink(missing_ok=True)  # no claim of completeness while running
    write_cmd(folder, cfg, steps)
    t0 = time.time()
    for i, step in enumerate(steps, start=1):
        logging.info(
            "System %s (%s), step %d/%d: %s", system.name, folder, i, len(steps), step.command()
        )
        step.run()
    with atomic_write(folder / "system.json") as f:
        done = {
            "seconds": round(time.time() - t0, 1),
            "finished_at": time.strftime(FINISHED_AT_FORMAT),
        }
        json.dump({**record, **done}, f, indent=1)
        f.write("\n")
    return True


def _run_in_worker(cfg: SystemsConfig, exps: Experiments, system: System, folder: Path) -> bool:
    """:func:`_run_one` in a worker process of ``--jobs``: one torch thread per job."""
    import torch

    torch.set_num_threads(1)
    return _run_one(cfg, exps, system, folder)


def rescore_systems(cfg: SystemsConfig) -> dict[str, str]:
    """Every system of the matrix; returns ``{system: "ran" | "skipped" | "left"}`` ("left":
    not ready, or beyond ``--max-runs``, for a later call)."""
    exps = load_experiments(cfg.systems, cfg.lm_seeds, sets=cfg.sets, exclude=cfg.exclude_systems)
    if cfg.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {cfg.jobs}")
    if cfg.max_runs < 0:
        raise InputError(f"--max-runs must be >= 0, got {cfg.max_runs}")
    if cfg.max_runs and cfg.jobs != 1:
        raise InputError(f"--max-runs {cfg.max_runs} needs --jobs 1 (runs one after another)")
    runs: list[tuple[System, int | None]] = [
        (system, seed) for system in exps.systems.values() for seed in exps.seeds_of(system.name)
    ]
    waiting: list[tuple[System, int | None]] = []
    if cfg.ready_from is not None:
        runs, waiting = split_ready(cfg, exps, runs, cfg.ready_from)
        if waiting:
            logging.info(
                "Not ready (a checkpoint or n-best list is not yet an output of a finished "
                "stage in %s), "
                "left for a later run: %s",
                cfg.ready_from,
                ", ".join(f"{s.name}" + ("" if n is None else f" seed {n}") for s, n in waiting),
            )
    check_inputs(cfg, exps, runs)
    ran: dict[str, bool] = dict.fromkeys(exps.systems, False)
    with output_folder(cfg.out_dir):
        if cfg.jobs == 1:
            count = 0
            for i, (system, seed) in enumerate(runs):
                if cfg.max_runs and count >= cfg.max_runs:
                    logging.info("--max-runs %d reached; the rest is left for a later run", count)
                    waiting += runs[i:]
                    break
                folder = seed_folder(cfg.out_dir, system.name, seed)
                done = _run_one(cfg, exps, system.for_seed(seed), folder)
                ran[system.name] |= done
                count += done
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: the workers inherit the logging set-up; no torch thread exists yet here
            ctx = multiprocessing.get_context("fork")
            # the longest runs first (a log-linear system extracts features with two LMs and
            # the NLU model: ~4x an LM system), so that no long run is left alone at the end
            runs = sorted(runs, key=lambda r: r[0].kind != "loglinear")
            with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=ctx) as pool:
                futures = [
                    (
                        system.name,
                        pool.submit(
                            _run_in_worker,
                            cfg,
                            exps,
                            system.for_seed(seed),
                            seed_folder(cfg.out_dir, system.name, seed),
                        ),
                    )
                    for system, seed in runs
                ]
                for name, fut in futures:
                    ran[name] |= fut.result()  # the first error is raised here
    left = {s.name for s, _ in waiting}
    done = {k: "ran" if v else "left" if k in left else "skipped" for k, v in ran.items()}
    logging.info("rescore-systems: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
    return done


def main(argv: list[str] | None = None) -> None:
    run_cli("rescore-systems", SystemsConfig, rescore_systems, __doc__, argv, errors=(ValueError,))


if __name__ == "__main__":
    main()
