"""Checkpoints shared by ASR and LM training: atomic save, safe load, find-last, averaging.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with ``weights_only=True``,
so it may hold only tensors and Python primitives (dict/list/tuple/str/int/float/bool/None).
Conventional keys: ``model``, ``optimizer``, ``scheduler``, ``sampler``, ``config`` (a dict),
``epoch``, ``step``, ``env`` (git sha and library versions, see :func:`common.env.env_info`).

Usage:
    save_checkpoint(exp_dir / "epoch-3.pt", {"model": model.state_dict(), "epoch": 3, ...})
    ckpt = load_checkpoint(find_last_checkpoint(exp_dir))
    avg = average_checkpoints([exp_dir / f"epoch-{i}.pt" for i in (2, 3, 4)])
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from common.env import env_info
from common.io import CheckpointError, atomic_path

__all__ = [
    "CheckpointError",
    "average_checkpoints",
    "epoch_checkpoints",
    "find_last_checkpoint",
    "list_epoch_checkpoints",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
]

_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save ``state`` (plus ``env`` if absent) to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    state.setdefault("env", env_info())
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    logging.info("Saved checkpoint %s", path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: naming ``path`` when the file is missing, truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt file
        first = (str(e).strip().splitlines() or [""])[0][:200]  # torch's messages run to pages
        raise CheckpointError(
            f"{path}: cannot load checkpoint ({type(e).__name__}: {first})"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (no 'model' entry)")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """``model.load_state_dict`` with an error that names the checkpoint on a shape/key mismatch."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: checkpoint does not match the model configuration: {e}"
        ) from e


def epoch_checkpoints(exp_dir: str | Path) -> dict[int, Path]:
    """``{N: epoch-N.pt}`` of the files in ``exp_dir``, in increasing N."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return {}
    found = [(int(m.group(1)), p) for p in exp_dir.iterdir() if (m := _EPOCH_RE.match(p.name))]
    return dict(sorted(found))


def list_epoch_checkpoints(exp_dir: str | Path) -> list[Path]:
    """``epoch-N.pt`` files in ``exp_dir`` sorted by N."""
    return list(epoch_checkpoints(exp_dir).values())


def find_last_checkpoint(exp_dir: str | Path) -> Path | None:
    """The newest complete ``epoch-N.pt`` (atomic writes mean every listed file is complete)."""
    ckpts = list_epoch_checkpoints(exp_dir)
    return ckpts[-1] if ckpts else None


def average_checkpoints(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """Average the ``model`` state dicts of ``paths`` (integer buffers are taken from the last).

    Returns:
        A model state dict.
    """
    if not paths:
        raise CheckpointError("average_checkpoints: no checkpoints given")
    avg: dict[str, torch.Tensor] | None = None
    dtypes: dict[str, torch.dtype] = {}
    for p in paths:
        sd = load_checkpoint(p)["model"]
        if avg is None:
            dtypes = {k: v.dtype for k, v in sd.items()}
            avg = {
                k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in sd.items()
            }
            continue
        if sd.keys() != avg.keys():
            raise CheckpointError(f"{p}: parameters differ from {paths[0]}")
        for k, v in sd.items():
            if not isinstance(v, torch.Tensor) or v.shape != avg[k].shape:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise CheckpointError(
                    f"{p}: parameter {k} has shape {shape}, {paths[0]} has {tuple(avg[k].shape)}"
                )
            if v.is_floating_point():
                avg[k] += v.double()
            else:
                avg[k] = v.clone()
    assert avg is not None
    n = len(paths)
    return {k: (v / n).to(dtypes[k]) if v.is_floating_point() else v for k, v in avg.items()}
