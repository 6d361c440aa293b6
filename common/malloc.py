"""glibc malloc thresholds for CPU training: large tensors reused from the heap, not mmap-ed anew.

glibc serves an allocation above its mmap threshold (dynamic, at most 32 MiB by default) with a
fresh ``mmap`` and returns it with ``munmap`` when freed, so every such tensor of every training
step is page-faulted and zeroed by the kernel again. An RNN-T's joiner output (batch x frames x
tokens x vocabulary) is 40-200 MB at 120 s of audio per batch: ``train-asr`` on the SNIPS recipe
took ~23,000 minor page faults per second and spent 11% of its CPU time in the kernel. Raising
the mmap threshold (and the heap trim threshold with it, so freed memory stays in the heap) lets
glibc hand the same memory back step after step; the price is that the process keeps its peak
heap. The same effect as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the
environment (or jemalloc / tcmalloc preloaded), set from inside the process so that one option
of the entry point controls it.
"""

from __future__ import annotations

import ctypes
import logging
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MAX_MEGABYTES = 1023  # the trim threshold, twice it, must fit mallopt's int


def set_mmap_threshold(megabytes: int) -> bool:
    """Set glibc's mmap threshold to ``megabytes`` MiB and its trim threshold to twice that.

    Call it before the large allocations (at the start of training). ``megabytes`` <= 0 leaves
    malloc as it is. Returns whether the thresholds were set; elsewhere than Linux with glibc
    (macOS, musl) it logs a warning and does nothing.
    """
    if megabytes <= 0:
        return False
    nbytes = megabytes << 20
    mallopt = None
    if sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            mallopt = None
    if mallopt is None:
        logging.warning("malloc thresholds left alone: no glibc mallopt on %s", sys.platform)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if megabytes > MAX_MEGABYTES:
        raise ValueError(f"mmap threshold {megabytes} MiB: at most {MAX_MEGABYTES} (C int range)")
    ok = mallopt(M_MMAP_THRESHOLD, nbytes) == 1 and mallopt(M_TRIM_THRESHOLD, 2 * nbytes) == 1
    if ok:
        logging.info(
            "glibc malloc: mmap threshold %d MiB, trim threshold %d MiB", megabytes, 2 * megabytes
        )
    else:
        logging.warning("glibc mallopt refused an mmap threshold of %d MiB", megabytes)
    return ok
