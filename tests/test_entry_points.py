"""Every console script declared in setup.cfg is installed and answers --help.

The installed script file itself (pip's wrapper: ``from <module> import main; sys.exit(main())``)
is executed, with ``sys.argv = [<script>, "--help"]``, in this interpreter: a fresh Python per
script would spend ~3 s importing torch/lhotse for each of the 15 that need them. A fresh
interpreter is still checked for every script: the recipe tests (tests/recipes) start each
script their run.sh uses as a process of its own, and the others are started here.
"""

import configparser
import logging
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE_SCRIPTS = [ROOT / "recipes/common/run.sh", *sorted(ROOT.glob("recipes/*/run.sh"))]


def _scripts() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return [line.split("=")[0].strip() for line in lines if line.strip()]


def _started_by_the_recipes(script: str) -> bool:
    """``script`` is a command of a recipe run.sh (so the recipe tests start it afresh)."""
    code = "\n".join(re.sub(r"(^|\s)#.*", "", p.read_text(), flags=re.M) for p in RECIPE_SCRIPTS)
    code = code.replace(":-", " ")  # ${asr_launcher:-train-asr}
    return re.search(rf"(?<![\w-]){re.escape(script)}(?![\w-])", code) is not None


@pytest.mark.parametrize("script", _scripts())
def test_help(script, monkeypatch, capsys):
    exe = Path(sys.executable).parent / script
    assert exe.exists(), f"{script} not installed: run 'pip install -e .'"
    monkeypatch.setattr(sys, "argv", [str(exe), "--help"])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLIs configure the root logger
    try:
        with pytest.raises(SystemExit) as e:
            runpy.run_path(str(exe), run_name="__main__")
    finally:
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    assert "usage:" in out.lower()
    if not _started_by_the_recipes(script):  # and in an interpreter of its own
        r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "usage:" in r.stdout.lower()
