"""Run metadata saved with every experiment and checkpoint: git sha and library versions."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path


def git_sha() -> str:
    """The current commit of the toolkit's checkout (``+dirty`` if modified), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env_info() -> dict[str, str]:
    """Git sha and library versions, saved in every experiment folder and checkpoint."""
    info = {"git_sha": git_sha(), "python": sys.version.split()[0]}
    for pkg in ("torch", "torchaudio", "lhotse", "sentencepiece", "kaldifst", "numpy"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    return info
