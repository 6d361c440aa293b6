"""The package plan (pyproject.toml [tool.importlinter]) holds: common/ at the bottom, asr/ and
lm/ siblings, data_prep/ corpus-only, rescoring/ free of asr/ and corpus code."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    exe = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert exe, "import-linter is not installed (it is in setup.cfg's dev extras)"
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" not in r.stdout.lower().replace("0 broken", "")
