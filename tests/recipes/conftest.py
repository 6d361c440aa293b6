"""Stages 0-5 of the SNIPS recipe (tiny preset, mini corpus), run once per session by run.sh.

The recipe tests that start from finished data stages take a copy (:func:`copy_work_dir`) instead
of rendering, validating and featurising the corpus again (~25 s each). The stage markers
fingerprint a file by size and mtime and every path in the work dir is relative to it, so a copy
that keeps mtimes is a work dir with stages 0-5 done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SNIPS_RUN_SH = Path(__file__).resolve().parents[2] / "recipes" / "snips" / "run.sh"


def snips_args(mini_snips_dir: Path, mini_lm_text_dir: Path) -> tuple[str, ...]:
    return ("--corpus-dir", str(mini_snips_dir), "--lm-text-dir", str(mini_lm_text_dir))


@pytest.fixture(scope="session")
def snips_tiny_data_work(tmp_path_factory, mini_snips_dir, mini_lm_text_dir) -> Path:
    """A SNIPS work dir with stages 0-5 done by ``run.sh --preset tiny --stop-stage 5``.

    Never changed by a test: take a :func:`copy_work_dir` of it.
    """
    work = tmp_path_factory.mktemp("snips_tiny_data") / "work"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", str(SNIPS_RUN_SH), "--preset", "tiny", "--work-dir", str(work)]
    cmd += [*snips_args(mini_snips_dir, mini_lm_text_dir), "--stop-stage", "5"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("Stage 5: done") == 1 and "already done" not in r.stdout
    assert sorted(p.name for p in (work / ".done").iterdir()) == [f"stage{n}" for n in range(6)]
    return work


def copy_work_dir(src: Path, dst: Path) -> Path:
    """A copy of the work dir ``src`` at ``dst`` (mtimes kept: the stage markers still match)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst
