"""The variables a recipe preset (recipes/<corpus>/conf/*.sh) sets, read by sourcing it in bash
as run.sh does, with ``cpu_has_bf16`` and ``cpu_bf16_pays`` (recipes/common/host.sh) answering as
asked."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Names bash had before the preset was sourced are left out (its own and the environment's),
# and so are this script's (prefixed __pv_) and PIPESTATUS (which its first pipeline creates):
# what is left is what the preset set.
_SCRIPT = """
__pv_before=" $(compgen -v | tr '\\n' ' ') "
. "$0"
for __pv_v in $(compgen -v); do
  case "$__pv_before" in *" $__pv_v "*) continue ;; esac
  case "$__pv_v" in __pv_*|PIPESTATUS) continue ;; esac
  printf '%s=%s\\0' "$__pv_v" "${!__pv_v}"
done
"""


def preset_vars(path: Path, bf16: bool = True) -> dict[str, str]:
    """Every variable the preset at ``path`` sets, with its exact value, ``cpu_has_bf16`` and
    ``cpu_bf16_pays`` answering ``bf16``."""
    rc = 0 if bf16 else 1
    stub = f"cpu_has_bf16() {{ return {rc}; }}\ncpu_bf16_pays() {{ return {rc}; }}\n"
    out = subprocess.run(
        ["bash", "-c", stub + _SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if item)
