"""What the recipe process tests read from /proc: whether a process has a live thread, its
command line, the live members of a process group. A process whose main thread ended before
its other threads shows Z in /proc/PID/stat while those threads still hold its files (run.sh's
lock among them), so "live" means "a thread not exited" (recipes/common/proc.sh, threads_live).
"""

import contextlib
import os
from pathlib import Path


def _fields(stat: Path) -> list[str]:
    """The fields after the command name (which may hold spaces and parentheses): state, ppid,
    pgrp, ..."""
    return stat.read_text().rsplit(")", 1)[1].split()


def threads_live(pid: int | str) -> bool:
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            if _fields(stat)[0] not in ("Z", "X"):
                return True
    return False


def cmdline(pid: int | str) -> str:
    """The command line of ``pid``; a zombie main thread has none, so that of a live thread."""
    for path in [Path(f"/proc/{pid}/cmdline"), *Path(f"/proc/{pid}/task").glob("*/cmdline")]:
        with contextlib.suppress(OSError):
            if raw := path.read_bytes():
                return raw.replace(b"\0", b" ").decode(errors="replace")
    return ""


def group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` with a live thread."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            pgrp = int(_fields(Path(f"/proc/{pid}/stat"))[2])
        except OSError:
            continue
        if pgrp == pgid and threads_live(pid):
            found.append(int(pid))
    return found
