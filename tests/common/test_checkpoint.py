"""Checkpoint loading and averaging: every bad file is a one-line CheckpointError naming it."""

import pytest
import torch

from common.checkpoint import average_checkpoints, load_checkpoint, save_checkpoint
from common.io import CheckpointError


def test_average_refuses_mismatched_shapes(tmp_path):
    a, b = tmp_path / "epoch-1.pt", tmp_path / "epoch-2.pt"
    save_checkpoint(a, {"model": {"w": torch.zeros(2, 3)}})
    save_checkpoint(b, {"model": {"w": torch.ones(3, 2)}})
    with pytest.raises(CheckpointError, match=r"epoch-2.pt: parameter w has shape \(3, 2\)"):
        average_checkpoints([a, b])
    save_checkpoint(b, {"model": {"w": torch.ones(2, 3)}})
    assert torch.equal(average_checkpoints([a, b])["w"], torch.full((2, 3), 0.5))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "cannot load checkpoint"),
        (None, "not a checkpoint of this toolkit"),
    ],
)
def test_load_names_the_file_in_one_line(tmp_path, content, message):
    p = tmp_path / "x.pt"
    if content is None:
        torch.save({"model": [1, 2]}, p)  # a 'model' that is not a state dict
    else:
        p.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
