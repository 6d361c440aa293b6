"""Conventions of the stored copies of train utterances, shared by the sides that write them
(``compute-fbank --speed-perturb``, ``prepare-snips --train-renders``) and the sides that
perturb or read them (``train-asr --aug-speed``, ``--speed-cuts``, ``--render-cuts``)."""

from __future__ import annotations

import re

#: allowed speed factors (Kaldi recipes use 0.9 and 1.1)
SPEED_RANGE = (0.5, 2.0)
#: a speed-perturbed copy's cut id: Lhotse's ``cut.perturb_speed`` affix ``_sp<factor>``
SPEED_COPY_ID = re.compile(r"^(?P<orig>.+)_sp(?P<factor>[0-9]+(?:\.[0-9]+)?)$")
#: the split of the other TTS renderings of the train utterances (``prepare-snips
#: --train-renders``): manifests ``<prefix>_{recordings,supervisions}_train_renders``
RENDER_SPLIT = "train_renders"
#: the utterance (supervision and recording) id of rendering ``k`` (>= 2) of a train utterance,
#: ``<orig>_r<k>``, and the supervision id of its speed-perturbed copies,
#: ``<orig>_r<k>_sp<factor>`` (their cut ids are Lhotse's, ``<recording id>-<n>[_sp<factor>]``)
RENDER_COPY_ID = re.compile(
    r"^(?P<orig>.+)_r(?P<render>[0-9]+)(?:_sp(?P<factor>[0-9]+(?:\.[0-9]+)?))?$"
)


def render_id(utt_id: str, k: int) -> str:
    """The id of rendering ``k`` (>= 2) of utterance ``utt_id``: see :data:`RENDER_COPY_ID`."""
    if k < 2:
        raise ValueError(f"rendering {k}: the first rendering keeps the utterance's own id")
    return f"{utt_id}_r{k}"
