"""Run metadata saved with every experiment and checkpoint: git sha and library versions."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
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


def source_fingerprint(*packages: str) -> str:
    """A hash of the Python source of ``packages`` (every ``*.py`` below each package folder,
    by relative path and content): equal exactly when that code is the same, whatever the git
    state (an installed copy, uncommitted edits). Caches of computed outputs keep it, so that
    a code change invalidates them (``tune-context``'s grid points)."""
    digest = hashlib.sha256()
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"source_fingerprint: {name!r} is not an importable package")
        for root in map(Path, spec.submodule_search_locations):
            for path in sorted(root.rglob("*.py")):
                rel = f"{name}/{path.relative_to(root).as_posix()}"
                digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def env_info() -> dict[str, str]:
    """Git sha and library versions, saved in every experiment folder and checkpoint."""
    info = {"git_sha": git_sha(), "python": sys.version.split()[0]}
    for pkg in ("torch", "torchaudio", "lhotse", "sentencepiece", "kaldifst", "numpy"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    return info
