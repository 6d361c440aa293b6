"""recipes/common/proc.sh: kill_tree misses no descendant, even of a parent that keeps starting
children while it is being killed, and kill_children returns only when its processes have exited
(test_tiny_recipe_killed_resumed_and_rerun failed now and then: its re-run found the killed
run's lock still held by a train-asr that was still exiting after run.sh had ended)."""

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.recipes.procs import group_members

PROC_SH = Path(__file__).resolve().parents[2] / "recipes" / "common" / "proc.sh"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _bash(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; . "$0"; {script}', str(PROC_SH), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait_until_gone(pgid: int) -> list[int]:
    """Members of ``pgid`` left once they stop disappearing (TERM takes a moment to act); the
    wait ends early as soon as none is left, so it never decides the outcome by itself."""
    for _ in range(300):
        left = group_members(pgid)
        if not left:
            return []
        time.sleep(0.1)
    return group_members(pgid)


def test_kill_tree_misses_no_child_of_a_parent_that_keeps_starting_them():
    # a parent that starts a child (and a grandchild: bash -c runs sleep as its child) every
    # few milliseconds, in its own process group, so that every descendant can be found
    parent = subprocess.Popen(
        ["bash", "-c", "while :; do bash -c 'sleep 600; :' & sleep 0.002; done"],
        start_new_session=True,
    )
    try:
        while len(_children(parent.pid)) < 20:  # it is busy starting children
            assert parent.poll() is None
            time.sleep(0.05)
        r = _bash("kill_tree $1", str(parent.pid))
        assert r.returncode == 0, r.stderr
        parent.wait(timeout=60)
        assert parent.returncode == -signal.SIGTERM
        left = _wait_until_gone(parent.pid)
        assert not left, f"{len(left)} descendants outlived kill_tree"
    finally:  # clean-up; the group is empty once init has reaped every zombie of it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)


def test_kill_tree_of_a_finished_process_and_kill_children():
    r = _bash("sleep 0.01 & p=$!; wait $p; kill_tree $p; echo ok")
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    # kill_children: every child of the calling shell, with its descendants
    r = _bash(
        "bash -c 'sleep 600; :' & a=$!; bash -c 'sleep 600; :' & b=$!; kill_children; "
        'wait $a || echo "status $?"; wait $b || echo "status $?"'
    )
    assert r.returncode == 0 and r.stdout.split("\n") == ["status 143"] * 2 + [""], r.stderr


def test_kill_children_waits_until_they_have_exited(tmp_path):
    # a child that takes 2 s to exit after TERM, holding a lock the whole time (as a stage
    # holds run.sh's): when kill_children returns, it has exited and the lock is free (its
    # output goes elsewhere: reading ours to the end would wait for its exit by itself)
    lock = tmp_path / "lock"
    ready = tmp_path / "ready"
    slow = f"exec 9>> {lock}; flock 9; trap 'sleep 2; exit 0' TERM; sleep 600 & touch {ready}; wait"
    r = _bash(
        f'bash -c "{slow}" > /dev/null 2>&1 & until [ -e {ready} ]; do sleep 0.05; done; '
        "kill_children; echo returned"
    )
    assert r.returncode == 0 and r.stdout == "returned\n", r.stderr
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


def test_kill_children_kills_what_ignores_term_after_kill_wait_s(tmp_path):
    ready = tmp_path / "ready"
    r = _bash(
        f"kill_wait_s=1; bash -c \"trap '' TERM; sleep 600 & touch {ready}; wait\" > /dev/null 2>&1 & "
        f"p=$!; until [ -e {ready} ]; do sleep 0.05; done; kill_children; "
        "case $(proc_state $p) in Z | '') echo exited ;; *) echo running ;; esac"
    )
    assert r.returncode == 0 and r.stdout == "exited\n", r.stderr
    assert "still running after TERM: KILL" in r.stderr


# A process whose main thread has ended while another thread runs: /proc/PID/stat shows Z, yet
# the process still holds its files (here a lock, as a train-asr holds run.sh's). The other
# thread ignores TERM, so only KILL (after kill_wait_s) ends it.
_ZOMBIE_LEADER = """
import ctypes, fcntl, signal, sys, threading, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
threading.Thread(target=time.sleep, args=(600,)).start()
open(sys.argv[2], "w").close()
ctypes.CDLL(None).pthread_exit(None)  # the main thread ends; the process lives on
"""


def test_kill_children_waits_for_every_thread_of_a_zombie_main_thread(tmp_path):
    lock, ready, script = tmp_path / "lock", tmp_path / "ready", tmp_path / "zombie_leader.py"
    script.write_text(_ZOMBIE_LEADER)
    r = _bash(  # its output goes elsewhere, so that a survivor does not keep ours open
        f"{sys.executable} {script} {lock} {ready} > /dev/null 2>&1 & p=$!; echo $p; "
        f"until [ -e {ready} ] && [ $(proc_state $p) = Z ]; do sleep 0.05; done; "
        "threads_live $p && echo live; kill_wait_s=1 kill_children; "
        "threads_live $p || echo gone"
    )
    pid, *out = r.stdout.split("\n")
    try:
        assert r.returncode == 0 and out == ["live", "gone", ""], r.stdout + r.stderr
        assert "still running after TERM: KILL" in r.stderr
        with lock.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
