"""Honest stage markers for the recipes' ``run.sh``: a ``.done`` marker records what made it.

A finished stage leaves ``.done/stageN`` (JSON): its command, the values of the recipe variables
that command reads, the fingerprints (size, mtime) of its declared inputs, the outputs it
promised, its time and peak memory, and the preset. On a re-run the marker counts as "done" only
if the same command on the same inputs would be run and every promised output still exists:

- no marker, or a marker whose outputs are gone: the stage runs (it resumes where it can);
- a marker made by another command, other variable values or other inputs (another preset,
  other options, an earlier stage that was redone): the stage stops with a message listing
  what differs, or re-runs with ``--on-change rerun``;
- ``--on-change always``: every stage in the range runs again, done or not. The markers record
  commands, variables and inputs, not the Python code, so this is the way to redo stages after
  the code changed (e.g. the report after a fix to ``make-report``).

``stage-marker table`` turns the markers into the stage-time table of RESULTS.md (Python, not
bash arithmetic); ``stage-marker holders`` names the processes that keep a work dir's lock.

Usage:
    stage-marker check --done-dir .done --stage 6 --inputs data/fbank -- train-asr --exp-dir ...
    stage-marker write --done-dir .done --stage 6 --desc "Train the RNN-T" --seconds 42 \\
        --peak-rss-kb 123456 --inputs data/fbank --outputs exp/asr/avg.pt -- train-asr ...
    stage-marker table --done-dir .done --parallel 6-8 9-13
    stage-marker holders .run.lock
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common.cli import cli_errors
from common.io import InputError, atomic_write

MARKER_VERSION = 2

#: Exit status of ``check``: 0 done, 1 to run, 3 done by something else (stop).
DONE, TO_RUN, CHANGED = 0, 1, 3

#: Shell variables that name *where* things are, not *what* is computed: not part of a signature.
_IGNORED_VARS = frozenset(
    {"work_dir", "recipe_dir", "SECONDS", "PATH", "HOME", "PWD", "OLDPWD", "RANDOM", "BASHPID"}
)
_VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_MAX_FILES_PER_DIR = 200_000


def fingerprint(path: str | Path) -> list[Any] | None:
    """``[size, mtime_ns]`` of a file; ``["dir", n_files, digest]`` of a folder; ``None`` if absent.

    A folder's digest covers every file's relative path, size and mtime (not the bytes: a
    14,000-file audio folder is fingerprinted in well under a second).
    """
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]
    if not p.is_dir():
        return None
    h = hashlib.sha256()
    n = 0
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):  # temp files, locks
                continue
            f = Path(root) / name
            try:
                st = f.stat()
            except OSError:
                continue
            h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n += 1
            if n > _MAX_FILES_PER_DIR:
                raise InputError(f"{p}: more than {_MAX_FILES_PER_DIR} files; declare sub-folders")
    return ["dir", n, h.hexdigest()[:16]]


def referenced_vars(function_body: str, environ: dict[str, str]) -> dict[str, str]:
    """Values of the (exported) shell variables a function body refers to, sorted by name."""
    names = sorted(set(_VAR_RE.findall(function_body)) - _IGNORED_VARS)
    return {n: environ[n] for n in names if n in environ}


FINISHED_AT_FORMAT = "%Y-%m-%d %H:%M:%S"  # StageRecord.finished_at (local time)


@dataclass
class StageRecord:
    """What made a stage's outputs (the ``.done/stageN`` file)."""

    stage: int
    argv: list[str]
    variables: dict[str, str] = field(default_factory=dict)
    function_body: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    preset: str = ""
    desc: str = ""
    seconds: float | None = None
    peak_rss_kb: int | None = None
    finished_at: str = ""
    version: int = MARKER_VERSION

    def what(self) -> dict[str, Any]:
        """The part that must match for the stage to count as done."""
        return {
            "argv": self.argv,
            "variables": self.variables,
            "function_body": self.function_body,
            "inputs": self.inputs,
        }

    @classmethod
    def read(cls, path: Path) -> StageRecord | None:
        """The marker at ``path``; ``None`` for an old-format or unreadable one (treated as absent)."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(obj, dict) or obj.get("version") != MARKER_VERSION:
            return None
        try:
            return cls(**obj)
        except TypeError:
            return None


def finished_outputs(done_dir: str | Path) -> set[str]:
    """The outputs (normalised paths) of every finished stage whose marker is in ``done_dir``
    (unreadable and old-format markers count as absent). A marker says its stage ran to its end;
    whether its outputs are still what the stage's inputs would make is what a re-run checks."""
    out: set[str] = set()
    for path in sorted(Path(done_dir).glob("stage*")):
        rec = StageRecord.read(path)
        if rec is not None:
            out.update(os.path.normpath(o) for o in rec.outputs)
    return out


def _current(args: argparse.Namespace) -> StageRecord:
    body = args.function_body or ""
    return StageRecord(
        stage=args.stage,
        argv=list(args.argv),
        variables=referenced_vars(body, dict(os.environ)),
        function_body=body,
        inputs={p: fingerprint(p) for p in args.inputs},
        outputs=list(args.outputs),
        preset=args.preset,
        desc=args.desc,
    )


def _differences(old: StageRecord, new: StageRecord) -> list[str]:
    out = []
    if old.argv != new.argv:
        out.append(f"command: {' '.join(old.argv)!r} -> {' '.join(new.argv)!r}")
    for k in sorted(set(old.variables) | set(new.variables)):
        if old.variables.get(k) != new.variables.get(k):
            out.append(f"${k}: {old.variables.get(k)!r} -> {new.variables.get(k)!r}")
    if old.function_body != new.function_body and old.argv == new.argv:
        out.append("the stage function's code changed")
    for p in sorted(set(old.inputs) | set(new.inputs)):
        if old.inputs.get(p) != new.inputs.get(p):
            out.append(f"input {p} changed since the stage ran")
    return out


def check(args: argparse.Namespace) -> int:
    marker = Path(args.done_dir) / f"stage{args.stage}"
    if not marker.exists():
        return TO_RUN
    old = StageRecord.read(marker)
    if old is None:
        print(f"{marker}: marker from an older version of the recipe; running the stage again")
        return TO_RUN
    if args.on_change == "always":
        print(f"stage {args.stage} ({old.desc}) is done; running it again (--on-change always)")
        marker.unlink()
        return TO_RUN
    new = _current(args)
    missing = [o for o in old.outputs if not Path(o).exists()]
    if missing:
        print(
            f"stage {args.stage} is marked done but its outputs are gone ({', '.join(missing)}); running it again"
        )
        return TO_RUN
    diffs = _differences(old, new)
    if not diffs:
        return DONE
    lines = "\n  ".join(diffs[:20])
    msg = (
        f"stage {args.stage} ({old.desc}) was done by another configuration"
        f" (preset {old.preset or '?'}, now {new.preset or '?'}):\n  {lines}"
    )
    if args.on_change == "rerun":
        print(f"{msg}\nrunning it again (--on-change rerun)")
        marker.unlink()
        return TO_RUN
    print(
        f"{msg}\nIts outputs are not what this run would make. Use another --work-dir, or pass "
        "--on-change rerun to redo every changed stage (a training stage resumes from the "
        "checkpoints in its exp dir: remove them first if the model changed).",
        file=sys.stderr,
    )
    return CHANGED


def write(args: argparse.Namespace) -> int:
    rec = _current(args)
    missing = [o for o in rec.outputs if not Path(o).exists()]
    if missing:
        raise InputError(f"stage {args.stage} finished without its outputs: {', '.join(missing)}")
    rec.seconds = args.seconds
    rec.peak_rss_kb = args.peak_rss_kb
    rec.finished_at = time.strftime(FINISHED_AT_FORMAT)
    with atomic_write(Path(args.done_dir) / f"stage{args.stage}") as f:
        json.dump(rec.__dict__, f, indent=1)
        f.write("\n")
    return DONE


def parse_ranges(specs: list[str]) -> list[set[int]]:
    """``["6-8,17-21", "9-16"]`` -> one set of stage numbers per group."""
    groups = []
    for spec in specs:
        group: set[int] = set()
        for part in spec.split(","):
            a, _, b = part.partition("-")
            try:
                group |= set(range(int(a), int(b or a) + 1))
            except ValueError:
                raise InputError(
                    f"--parallel: expected ranges like 6-8 or 6-8,17-21, got {spec!r}"
                ) from None
        groups.append(group)
    return groups


def _range_name(group: set[int]) -> str:
    """``{6, 7, 8, 17, 18}`` -> ``6-8, 17-18``."""
    runs: list[list[int]] = []
    for n in sorted(group):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def _legacy_record(path: Path) -> StageRecord | None:
    """A marker of the recipe before JSON markers (``seconds peak_kb description``), for the
    stage table only: such a marker never counts as done (it records nothing to check)."""
    try:
        secs, mem, desc = path.read_text(encoding="utf-8").strip().split(" ", 2)
        return StageRecord(
            stage=int(path.name.removeprefix("stage")),
            argv=[],
            desc=desc,
            seconds=float(secs),
            peak_rss_kb=int(mem) if mem.isdigit() else None,
        )
    except (OSError, ValueError):
        return None


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (the first ``model name`` of ``cpuinfo``; ``platform.processor()``
    where there is none, e.g. not Linux); "unknown" if neither says."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stage_records(done_dir: str | Path) -> list[StageRecord]:
    """Every readable marker of ``done_dir`` by stage number, old-format (legacy) ones included:
    what :func:`stage_table` and :func:`parallel_end` read (a legacy marker records no finish
    time, so it never counts in a span)."""
    recs = []
    for p in Path(done_dir).glob("stage*"):
        rec = StageRecord.read(p) or _legacy_record(p)
        if rec is not None:
            recs.append(rec)
    return sorted(recs, key=lambda r: r.stage)


def parallel_spans(
    recs: list[StageRecord], parallel: list[set[int]] | None
) -> tuple[list[set[int]], list[tuple[datetime, datetime, float] | None]]:
    """The parallel groups that have markers among ``recs``, and, if there are two, each one's
    span (:func:`_group_span`; ``None`` for a group none of whose markers records its time)."""
    present = {r.stage for r in recs}
    groups = [g for g in (parallel or []) if g & present]
    return groups, ([_group_span(recs, g) for g in groups] if len(groups) == 2 else [])


def _records(done: str | Path | list[StageRecord]) -> list[StageRecord]:
    return done if isinstance(done, list) else stage_records(done)


def stage_table(
    done: str | Path | list[StageRecord],
    parallel: list[set[int]] | None = None,
    cores: int | None = None,
) -> str:
    """Markdown: one row per finished stage (time, peak RSS) and the recipe's wall-clock time.

    Args:
        done: the ``.done`` folder, or its markers as :func:`stage_records` reads them.
        parallel: groups of stages that ran side by side (the recipe's RNN-T and LM groups):
            the wall-clock time counts only the longer of two such groups.
    """
    recs = _records(done)
    preset = recs[0].preset if recs else "?"
    lines = [
        f"## Stage times ({preset} preset, {cores or os.cpu_count()} CPU cores)",
        "",
        f"Host CPU when this report was made: {cpu_model()} (the seconds below depend on the "
        "host).",
        "",
        "| stage | what | seconds | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    secs = {r.stage: float(r.seconds or 0) for r in recs}
    for r in recs:
        mem = "-" if r.peak_rss_kb is None else str(r.peak_rss_kb // 1024)
        lines.append(f"| {r.stage} | {r.desc} | {secs[r.stage]:.0f} | {mem} |")
    total = sum(secs.values())
    lines.append("")
    groups, spans = parallel_spans(recs, parallel)
    if len(groups) == 2:
        a, b = (sum(secs.get(s, 0) for s in g) for g in groups)
        wall = total - min(a, b)
        names = [_range_name(g) for g in groups]
        lines.append(
            f"Recipe wall-clock time: **{wall:.0f} s ({wall / 60:.0f} min)**: stages {names[0]}"
            f" ({a:.0f} s) ran next to stages {names[1]} ({b:.0f} s), one CPU thread each (two "
            "seeds of an LM stage at once where the other group was idle: lm_seed_jobs), so "
            f"their peak memory adds up; the sum of all stage times is {total:.0f} s. "
            "Python/venv installation is not included."
        )
    else:
        lines.append(
            f"Recipe wall-clock time: **{total:.0f} s ({total / 60:.0f} min)** (sum of the stage"
            " times; Python/venv installation not included)."
        )
    span = _marker_span(recs)
    if span is not None:
        t0, t1 = span
        secs_span = (t1 - t0).total_seconds()
        lines += [
            "",
            f"The stage markers span **{secs_span:.0f} s ({secs_span / 60:.0f} min)**, from the "
            f"first stage's start ({t0:%Y-%m-%d %H:%M}) to the last stage's end "
            f"({t1:%Y-%m-%d %H:%M}, the host's local time): more than the wall-clock time above "
            "where stages waited for each other, or where the work dir was made by more than one "
            "run (resumed, or stages re-run or copied in later).",
        ]
        if spans and None not in spans:
            parts = []
            for g, (g0, g1, busy) in zip(groups, spans, strict=True):
                total_g = (g1 - g0).total_seconds()
                parts.append(
                    f"stages {_range_name(g)} from {g0:%H:%M} to {g1:%H:%M} ({total_g:.0f} s, "
                    f"{max(total_g - busy, 0):.0f} s of it waiting for the other group or between "
                    "runs)"
                )
            last = max(range(2), key=lambda i: spans[i][1])
            lines += [
                "",
                f"The two parallel groups by their markers: {parts[0]}; {parts[1]}. The stages "
                f"after them waited for stages {_range_name(groups[last])}.",
            ]
    return "\n".join(lines) + "\n"


def parallel_end(done: str | Path | list[StageRecord], parallel: list[set[int]]) -> datetime | None:
    """When the later of the two parallel groups' timed stages ended (by their markers, the
    host's local time); ``None`` without two such groups, or if one of them records no time.
    ``done``: as for :func:`stage_table`."""
    _, spans = parallel_spans(_records(done), parallel)
    if not spans or None in spans:
        return None
    return max(s[1] for s in spans if s is not None)


def _record_times(r: StageRecord) -> tuple[datetime, datetime] | None:
    """(start, end) of a marker that records when it finished (start = ``finished_at`` less
    ``seconds``); ``None`` if it does not."""
    try:
        end = datetime.strptime(r.finished_at, FINISHED_AT_FORMAT)
    except (TypeError, ValueError):
        return None
    return end - timedelta(seconds=float(r.seconds or 0)), end


def _marker_span(recs: list[StageRecord]) -> tuple[datetime, datetime] | None:
    """(first start, last end) of the markers that record when they finished; ``None`` if none
    does."""
    times = [t for t in map(_record_times, recs) if t is not None]
    return (min(t[0] for t in times), max(t[1] for t in times)) if times else None


def _group_span(
    recs: list[StageRecord], group: set[int]
) -> tuple[datetime, datetime, float] | None:
    """(first start, last end, seconds the stages ran) of one parallel group's timed markers;
    ``None`` if none of them records its time."""
    times = [t for t in (_record_times(r) for r in recs if r.stage in group) if t is not None]
    if not times:
        return None
    busy = sum((t1 - t0).total_seconds() for t0, t1 in times)
    return min(t[0] for t in times), max(t[1] for t in times), busy


def lock_holders(lock_file: str | Path) -> list[str]:
    """``pid: command`` of every live process that has ``lock_file`` open (Linux ``/proc``)."""
    target = os.path.realpath(lock_file)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{pid}: {cmd.decode(errors='replace').strip()[:160]}")
                    break
            except OSError:
                continue
    return found


def _parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="stage-marker",
        description=doc.split("\n\n")[0],
        epilog=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("check", "write"):
        p = sub.add_parser(name, help=f"{name} a stage marker")
        p.add_argument("--done-dir", type=Path, default=Path(".done"), help="marker folder")
        p.add_argument("--stage", type=int, required=True, help="stage number")
        p.add_argument("--desc", default="", help="what the stage does (for the report)")
        p.add_argument("--preset", default=os.environ.get("preset", ""), help="recipe preset")
        p.add_argument("--inputs", nargs="*", default=[], help="files/folders the stage reads")
        p.add_argument("--outputs", nargs="*", default=[], help="files/folders it must leave")
        p.add_argument("--function-body", default="", help="`declare -f` of a stage function")
        p.add_argument("argv", nargs="+", help="the stage command (after --)")
        if name == "check":
            p.add_argument(
                "--on-change",
                choices=("stop", "rerun", "always"),
                default="stop",
                help="a marker made by another configuration: stop (exit 3) or run the stage "
                "again; always: run it again even if its marker matches (after a code change)",
            )
        else:
            p.add_argument("--seconds", type=float, default=None, help="stage wall-clock time")
            p.add_argument("--peak-rss-kb", type=int, default=None, help="peak RSS (KiB)")
    p = sub.add_parser("table", help="markdown table of the finished stages' times")
    p.add_argument("--done-dir", type=Path, default=Path(".done"))
    p.add_argument("--parallel", nargs="*", default=[], help="stage ranges that ran side by side")
    p = sub.add_parser("holders", help="processes that keep a lock file open")
    p.add_argument("lock_file", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with cli_errors("stage-marker"):
        if args.cmd == "check":
            raise SystemExit(check(args))
        if args.cmd == "write":
            raise SystemExit(write(args))
        if args.cmd == "table":
            sys.stdout.write(stage_table(args.done_dir, parse_ranges(args.parallel)))
            return
        print("\n".join(lock_holders(args.lock_file)))


if __name__ == "__main__":
    main()
