"""common/malloc.py: the raised mmap threshold makes glibc reuse large blocks (no new page
faults once warm), leaves malloc alone for 0, refuses values out of mallopt's range and does
nothing (with a warning) where there is no glibc."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest

import common.malloc
from common.malloc import MAX_MEGABYTES, set_mmap_threshold

_FAULTS = textwrap.dedent(
    """
    import resource, sys
    from common.malloc import set_mmap_threshold
    print(set_mmap_threshold(int(sys.argv[1])))
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    per_round = []
    for _ in range(4):
        f0 = faults()
        for _ in range(5):
            block = bytearray(64 << 20)  # 64 MiB, zero-filled: every page touched
            del block
        per_round.append(faults() - f0)
    print(per_round)
    """
)


def _faults(threshold_mb: int) -> tuple[str, list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, str(threshold_mb)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split("\n")
    return out[0], json.loads(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_raised_threshold_reuses_large_blocks():
    ok, rounds = _faults(256)
    assert ok == "True"
    # after the first round the 64-MiB blocks come back from the heap: no new pages to fault
    # (glibc's default mmaps each one anew: ~16,000 faults per block without huge pages)
    assert max(rounds[1:]) < 1000, rounds


def test_zero_leaves_malloc_alone(monkeypatch):
    monkeypatch.setattr(common.malloc.ctypes, "CDLL", None)  # would fail if it were used
    assert set_mmap_threshold(0) is False


def test_out_of_range_threshold_is_refused():
    with pytest.raises(ValueError, match=f"at most {MAX_MEGABYTES}"):
        set_mmap_threshold(MAX_MEGABYTES + 1)


def test_no_glibc_is_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(common.malloc.sys, "platform", "darwin")
    with caplog.at_level(logging.WARNING):
        assert set_mmap_threshold(64) is False
    assert "no glibc mallopt on darwin" in caplog.text


def test_train_asr_option_is_validated():
    from asr.config import TrainConfig
    from common.io import InputError

    TrainConfig(malloc_mmap_threshold_mb=512).validate()
    with pytest.raises(InputError, match="--malloc-mmap-threshold-mb must be in"):
        TrainConfig(malloc_mmap_threshold_mb=MAX_MEGABYTES + 1).validate()
