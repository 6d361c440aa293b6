"""common.distributed: the process group is freed (its gloo worker threads joined) before exit.

Each case runs in a fresh interpreter: whether ``torch._dynamo`` was imported before the group
existed is what decides the outcome, and this test process may have imported it long ago.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from common.distributed import gloo_worker_threads

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    import torch
    import torch.distributed as dist
    from common.distributed import end_distributed, gloo_worker_threads, init_distributed

    logging.basicConfig(level=logging.INFO)
    # port 0: the store (rank 0 of 1) takes a free port itself
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="0", RANK="0", WORLD_SIZE="1")
    if sys.argv[1] == "plain":
        dist.init_process_group("gloo")   # what train-asr did before
    else:
        init_distributed("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
    model(torch.randn(4, 3)).sum().backward()
    gathered = [torch.zeros(2)]
    dist.all_gather(gathered, torch.ones(2))   # a collective of Python tensors, as at the end
    # the thread that ran it had named itself first (the other may not have yet)
    print("threads after a collective", min(gloo_worker_threads(), 1))
    del model, gathered
    print("threads left", end_distributed(), flush=True)
    if sys.argv[1] == "plain":  # threads still run: skip finalization, the race this is about
        logging.shutdown()
        os._exit(0)
    """
)


def _run(mode: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.skipif(gloo_worker_threads() is None, reason="threads are counted from /proc")
def test_end_distributed_joins_the_gloo_threads():
    out = _run("init_distributed")
    assert "threads after a collective 1" in out, out
    assert "threads left 0" in out, out
    assert "worker threads joined" in out, out


@pytest.mark.skipif(gloo_worker_threads() is None, reason="threads are counted from /proc")
def test_a_group_made_before_dynamo_is_imported_outlives_destroy():
    """Why init_distributed imports torch._dynamo first: without it DDP's import of dynamo keeps
    the group, its threads outlive end_distributed, and end_distributed says so."""
    out = _run("plain")
    assert "threads after a collective 1" in out, out
    assert "threads left 0" not in out, out
    assert "may abort at exit" in out, out
