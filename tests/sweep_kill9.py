"""kill -9 at every stage of the tiny SNIPS recipe, then resume: nothing lost, nothing half-made.

The slow part of the issue-10 fault sweep (the fast part is the ``test_fault_sweep.py`` modules
that CI runs). For each stage N in turn, in a work dir where stages < N are done:
  1. start ``run.sh --stop-stage N``; once stage N has started (and, for a second kill, after a
     random delay within the stage), ``kill -9`` the whole process group (a crash, an OOM kill);
  2. check that every output of the stages before N is byte-identical to before the kill;
  3. re-run ``run.sh --stop-stage N``: it must finish, skip stages < N, leave stage N's marker and
     its promised outputs, and leave no temporary file (``.*.tmp``) behind.
At the end the work dir holds a complete recipe, whose RESULTS.md is checked like the recipe test.

Usage (about 5-10 minutes on 2 cores; not collected by pytest):
    .venv/bin/python tests/sweep_kill9.py --corpus-dir DIR --lm-text-dir DIR [--work DIR]
    .venv/bin/python tests/sweep_kill9.py            # builds the mini corpus of tests/conftest.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "recipes" / "snips" / "run.sh"
NUM_STAGES = 27


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _cmd(work: Path, args: list[str], stop: int) -> list[str]:
    return ["bash", str(RUN_SH), "--preset", "tiny", "--work-dir", str(work), *args,
            "--stop-stage", str(stop)]  # fmt: skip


def _snapshot(work: Path) -> dict[str, str]:
    """sha256 of every regular file outside logs, locks and the markers."""
    out = {}
    for p in sorted(work.rglob("*")):
        rel = p.relative_to(work).as_posix()
        if not p.is_file() or rel.startswith(("log/", ".done/", ".run.lock")) or p.name == ".lock":
            continue
        if p.name.startswith(".stage") or p.name == "cmd.sh":
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _kill_during_stage(work: Path, args: list[str], n: int, delay: float, log: Path) -> str:
    with open(log, "w") as f:
        proc = subprocess.Popen(
            _cmd(work, args, n), env=_env(), stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    pattern = re.compile(rf"Stage {n}: (?!.*already done)")
    deadline = time.time() + 600
    started = None
    while proc.poll() is None and time.time() < deadline:
        text = log.read_text(errors="replace")
        if (work / "log/asr-stages.log").exists():
            text += (work / "log/asr-stages.log").read_text(errors="replace")
        if started is None and pattern.search(text):
            started = time.time()
        if started is not None and time.time() - started >= delay:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        return "finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # wait for the group to disappear (the kernel releases the work dir's lock with it)
    for _ in range(200):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    return f"killed {time.time() - started:.1f} s into stage {n}" if started else "killed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", type=Path)
    parser.add_argument("--lm-text-dir", type=Path)
    parser.add_argument("--work", type=Path, help="work dir (default: a new temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=3.0, help="s into a stage to kill")
    a = parser.parse_args()
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="sweep-kill9-"))
    if a.corpus_dir is None or a.lm_text_dir is None:
        sys.path.insert(0, str(ROOT))
        from tests.conftest import LM_TEXT, write_mini_snips

        a.corpus_dir = write_mini_snips(tmp / "snips")
        a.lm_text_dir = tmp / "lm_text"
        a.lm_text_dir.mkdir()
        (a.lm_text_dir / "chat.txt").write_text("".join(s + "\n" for s in LM_TEXT))
    work = a.work or tmp / "work"
    args = ["--corpus-dir", str(a.corpus_dir), "--lm-text-dir", str(a.lm_text_dir)]
    failures = []
    for n in range(NUM_STAGES):
        before = _snapshot(work) if work.exists() else {}
        for attempt, delay in enumerate((0.0, rng.uniform(0.2, a.max_delay))):
            what = _kill_during_stage(work, args, n, delay, tmp / f"kill-{n}-{attempt}.log")
            after = _snapshot(work)
            lost = [p for p, h in before.items() if after.get(p) != h]
            print(f"stage {n:2d} kill {attempt + 1}: {what}; earlier outputs changed: {len(lost)}")
            if lost:
                failures.append(f"stage {n}: earlier outputs changed after a kill: {lost[:5]}")
        r = subprocess.run(_cmd(work, args, n), env=_env(), capture_output=True, text=True)
        skipped = r.stdout.count("already done, skipping")
        temps = [str(p) for p in work.rglob(".*.tmp")]
        ok = r.returncode == 0 and (work / f".done/stage{n}").is_file() and not temps
        print(f"stage {n:2d} resume: exit {r.returncode}, {skipped} stages skipped,"
              f" temp files left: {len(temps)}")  # fmt: skip
        if not ok:
            failures.append(f"stage {n}: resume failed (exit {r.returncode}, temps {temps[:3]}):\n"
                            + r.stdout[-1500:] + r.stderr[-1500:])  # fmt: skip
            break
        lost = [p for p, h in before.items() if _snapshot(work).get(p) != h]
        if lost:
            failures.append(f"stage {n}: the resume changed earlier outputs: {lost[:5]}")
    if not failures:
        res = json.loads((work / "results.json").read_text())
        markers = {p.name: p.stat().st_mtime_ns for p in (work / ".done").iterdir()}
        before = _snapshot(work)
        r = subprocess.run(_cmd(work, args, 100), env=_env(), capture_output=True, text=True)
        after = {p.name: p.stat().st_mtime_ns for p in (work / ".done").iterdir()}
        if r.returncode != 0 or len(markers) != NUM_STAGES or after != markers:
            failures.append("a final re-run did not skip every stage")
        if _snapshot(work) != before:
            failures.append("a final re-run changed outputs")
        print(f"complete: {len(res['systems'])} systems in results.json")
    print("\n".join(failures) if failures else "kill -9 sweep: 0 lost outputs, 0 failed resumes")
    if not failures and a.work is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
