"""recipes/common/apt_contrib_nonfree.sh (make system-deps): adds Debian's contrib / non-free
components only where apt lacks mbrola or libttspico-utils, and says what to do elsewhere.
apt-cache, apt-get and sudo are stubs on PATH that log their calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "recipes" / "common" / "apt_contrib_nonfree.sh"


def _run(
    tmp_path: Path, os_release: str, candidates: bool
) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir, sources = tmp_path / "bin", tmp_path / "sources.list.d"
    bin_dir.mkdir()
    sources.mkdir()
    log = tmp_path / "calls.log"
    cand = "1.0-1" if candidates else "(none)"
    stubs = {
        "apt-cache": f'echo "apt-cache $*" >> {log}; echo "$2:"; echo "  Candidate: {cand}"',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "sudo": '"$@"',
    }
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    (tmp_path / "os-release").write_text(os_release)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OS_RELEASE": str(tmp_path / "os-release"),
        "APT_SOURCES_DIR": str(sources),
    }
    res = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    return res, log


DEBIAN = 'ID=debian\nVERSION_CODENAME=bookworm\nPRETTY_NAME="Debian GNU/Linux 12"\n'


def test_nothing_is_added_when_apt_has_both_packages(tmp_path):
    res, log = _run(tmp_path, DEBIAN, candidates=True)
    assert res.returncode == 0, res.stderr
    assert not list((tmp_path / "sources.list.d").iterdir())
    assert "apt-get" not in log.read_text()


def test_debian_gets_contrib_and_non_free_of_its_release(tmp_path):
    res, log = _run(tmp_path, DEBIAN, candidates=False)
    assert res.returncode == 0, res.stderr
    (src,) = (tmp_path / "sources.list.d").iterdir()
    text = src.read_text()
    assert "Suites: bookworm bookworm-updates" in text
    assert "Components: contrib non-free" in text
    assert "apt-get update" in log.read_text()


@pytest.mark.parametrize(
    ("os_release", "hint"),
    [
        ("ID=ubuntu\nVERSION_CODENAME=jammy\n", "multiverse"),
        ('ID=fedora\nPRETTY_NAME="Fedora 40"\n', "not a Debian release (Fedora 40)"),
    ],
)
def test_other_systems_get_a_clear_error_and_no_change(tmp_path, os_release, hint):
    res, _ = _run(tmp_path, os_release, candidates=False)
    assert res.returncode == 1
    assert hint in res.stderr and "two_train_engines" in res.stderr
    assert not list((tmp_path / "sources.list.d").iterdir())
