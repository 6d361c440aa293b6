"""Helpers of the fault sweeps (tests/asr/test_fault_sweep.py, tests/lm/test_fault_sweep.py):
wrong kinds of checkpoint, read-only folders, an exp dir locked by another process, and the
check that an entry point failed the way a user should see it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

#: Kinds of file given where a checkpoint of the other kind is expected.
BAD_CHECKPOINTS = ("missing", "truncated", "text", "random_dict", "model_only_dict")


def write_bad_checkpoint(kind: str, path: Path, good: Path | None = None) -> Path:
    """Put a checkpoint of ``kind`` at ``path`` (``truncated`` needs a ``good`` one to cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "missing":
        path.unlink(missing_ok=True)
    elif kind == "truncated":
        assert good is not None
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("epoch 3 looked good\n")
    elif kind == "random_dict":
        torch.save({"weights": torch.zeros(3), "note": "not ours"}, path)
    elif kind == "model_only_dict":
        torch.save({"model": {"w": torch.zeros(3)}}, path)
    elif kind == "lm":
        write_lm_checkpoint(path)
    elif kind == "asr":
        write_asr_checkpoint(path)
    else:
        raise ValueError(kind)
    return path


def write_lm_checkpoint(path: Path) -> Path:
    """A checkpoint shaped like ``train-lm``'s (tiny untrained LSTM LM, no tokenizer needed)."""
    from common.checkpoint import save_checkpoint
    from lm.config import get_preset
    from lm.model import MultitaskLM

    model_cfg, train_cfg = get_preset("tiny", "pretrain")
    model = MultitaskLM(model_cfg, 40)
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "config": {
                "model": dataclasses.asdict(model_cfg),
                "train": {"mode": train_cfg.mode, "epochs": train_cfg.epochs},
            },
            "tokenizer": torch.zeros(4, dtype=torch.uint8),
            "epoch": 1,
            "step": 1,
        },
    )
    return path


def write_asr_checkpoint(path: Path) -> Path:
    """A checkpoint shaped like ``train-asr``'s (tiny untrained RNN-T, vocabulary 40)."""
    from asr.config import get_model_preset, get_train_preset
    from asr.model import build_model
    from common.checkpoint import save_checkpoint
    from common.trainer import config_dict

    model_cfg = dataclasses.replace(get_model_preset("tiny"), vocab_size=40)
    save_checkpoint(
        path,
        {
            "model": build_model(model_cfg).state_dict(),
            "config": {
                "model": config_dict(model_cfg),
                "train": config_dict(get_train_preset("tiny")),
            },
            "epoch": 1,
            "step": 1,
        },
    )
    return path


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """Make ``folder`` unwritable for the block: ``chmod 555``, or as root (who ignores modes)
    the immutable attribute (``chattr +i``); skips the test where neither works."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)]).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


@contextlib.contextmanager
def locked_by_other_process(folder: Path) -> Iterator[int]:
    """Another process holds :func:`common.io.dir_lock` on ``folder`` for the block.

    The holder prints a line once it has the lock and keeps it until its stdin closes, so the
    test waits for the lock, not for a timer. Yields the holder's pid.
    """
    code = (
        "import sys\n"
        "from common.io import dir_lock\n"
        "with dir_lock(sys.argv[1], 'test'):\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def run_main(main: Callable[[list[str]], object], argv: list[str], capsys) -> tuple[int, str]:
    """Call an entry point's ``main(argv)`` in-process; returns (exit status, stderr)."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def assert_user_error(code: int, err: str, prog: str, *names: str) -> str:
    """Exit status 2, one ``prog: error: ...`` line naming each of ``names``, no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]
