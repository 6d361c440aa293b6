"""Every console script declared in setup.cfg is installed and answers --help."""

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _scripts() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return [line.split("=")[0].strip() for line in lines if line.strip()]


@pytest.mark.parametrize("script", _scripts())
def test_help(script):
    exe = Path(sys.executable).parent / script
    assert exe.exists(), f"{script} not installed: run 'pip install -e .'"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout.lower()
