"""Speed perturbation conventions shared by the side that stores speed-perturbed copies
(``compute-fbank --speed-perturb``) and the sides that perturb or read them (``train-asr
--aug-speed``, ``--speed-cuts``)."""

from __future__ import annotations

import re

#: allowed speed factors (Kaldi recipes use 0.9 and 1.1)
SPEED_RANGE = (0.5, 2.0)
#: a speed-perturbed copy's cut id: Lhotse's ``cut.perturb_speed`` affix ``_sp<factor>``
SPEED_COPY_ID = re.compile(r"^(?P<orig>.+)_sp(?P<factor>[0-9]+(?:\.[0-9]+)?)$")
