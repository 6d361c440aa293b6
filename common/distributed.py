"""Start and end a DDP process group so that the process can always exit cleanly.

A gloo worker thread (``pt_gloo_runloop``) drops its reference to a collective just *after* the
collective has returned to Python; if that was the last reference, the collective's tensors go
with it, and a tensor Python has seen gives its ``PyObject`` back, which takes the GIL. When the
main thread has already begun to finalize the interpreter by then, the worker thread is ended
inside a C++ destructor and the process aborts with ``terminate called without an active
exception`` (SIGABRT; once in about 20 two-rank runs of tests/asr/test_ddp.py here, and once in
CI). ``dist.destroy_process_group`` alone does not help: it only forgets the group, and the
threads live as long as the group does.

:func:`end_distributed` therefore frees the group while Python is still alive: the group's
destructor (run without the GIL) waits for the work queue, stops the worker threads and joins
them, so every collective has been released before the interpreter finalizes. That only works
if nothing else holds the group: importing ``torch._dynamo`` (DDP's constructor does, through
``get_optimize_ddp_mode``) after the group exists keeps ten references to it for the life of
the process, so :func:`init_distributed` imports it first. :func:`end_distributed` returns (and
logs) how many worker threads are left, so a regression shows in the logs and in the tests
instead of as a rare abort.

Usage:
    init_distributed("gloo")          # torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR ...
    try:
        ...                           # DDP training
    finally:
        end_distributed()
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch.distributed as dist

GLOO_WORKER_THREAD = "pt_gloo_runloop"


def init_distributed(backend: str) -> None:
    """``dist.init_process_group(backend)`` from the environment, ``torch._dynamo`` imported
    first (see the module doc)."""
    import torch._dynamo  # noqa: F401 - imported before the group exists, so it holds no ref

    dist.init_process_group(backend)


def gloo_worker_threads() -> int | None:
    """How many gloo worker threads this process runs (None where ``/proc`` is not there)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    n = 0
    for comm in tasks.glob("*/comm"):
        try:
            n += comm.read_text().strip() == GLOO_WORKER_THREAD
        except OSError:  # the thread ended while we looked
            continue
    return n


def end_distributed() -> int | None:
    """Destroy the default process group and free it now; returns the gloo worker threads left
    (0 when the group's threads were joined, None where they cannot be counted).

    Every reference to the group (a DDP wrapper, its model) must be gone by now; the caller
    drops them before it calls this. Left threads are logged as a warning.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()  # a DDP wrapper in a reference cycle still holds the group
    left = gloo_worker_threads()
    if left:
        logging.warning(
            "%d gloo worker threads still run after the process group was destroyed "
            "(something still holds it): the process may abort at exit",
            left,
        )
    elif left == 0:
        logging.info("process group destroyed, its worker threads joined")
    return left
