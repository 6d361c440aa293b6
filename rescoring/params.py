"""``tuned.json``: the typed result of ``tune-rescoring`` that ``rescore-nbest --params`` applies.

Every key is required and typed, an unknown key is an error (a renamed key must not silently
give λ = 0). Paths inside (checkpoints, the tuned-on n-best) are stored relative to the folder
of ``tuned.json`` and resolved against it when read, so ``--params`` works from any working
directory and the experiment tree can be moved as a whole.

Usage:
    write_tuned(staging / "tuned.json", params, base=out_dir)   # paths relative to out_dir
    params = read_tuned("exp/rescore/multitask_rwm/tuned.json")  # paths resolved
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from common.io import InputError, atomic_write, open_text
from rescoring.fields import at, get_int, get_number, get_str, shown


@dataclass(frozen=True)
class TunedParams:
    """What ``tune-rescoring`` chose on dev, and what it gave there."""

    scorer: str  # a key of rescoring.scorers.SCORERS
    lm_checkpoint: Path | None  # the scorer's checkpoint (None for --scorer none)
    nlu_checkpoint: Path | None  # multitask LM for intent + slots (None: the scorer's own)
    lm_scale: float  # λ
    word_bonus: float  # β
    dev_wer: float  # dev WER (%) at (λ, β)
    dev_wer_first_pass: float  # dev WER (%) of the first pass (λ = β = 0)
    tuned_on: Path  # the dev n-best
    grid_points: int  # size of the λ x β grid


PATH_FIELDS = ("lm_checkpoint", "nlu_checkpoint", "tuned_on")
KEYS = tuple(f.name for f in dataclasses.fields(TunedParams))


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base``, on real paths, so ``base/<result>`` finds it again."""
    return os.path.relpath(os.path.realpath(path), os.path.realpath(base))


def write_tuned(path: str | Path, params: TunedParams, base: str | Path) -> None:
    """Write ``params`` as JSON to ``path``, with paths relative to ``base`` (the folder the
    file ends up in: the staging folder of an output set is not it)."""
    d = dataclasses.asdict(params)
    for k in PATH_FIELDS:
        if d[k] is not None:
            d[k] = _relative(d[k], Path(base))
    with atomic_write(path) as f:
        json.dump(d, f, indent=2)
        f.write("\n")


def read_tuned(path: str | Path) -> TunedParams:
    """Read and validate ``tuned.json``; paths come back resolved against its folder.

    Raises:
        InputError: naming the file and the key for invalid JSON, a missing, unknown or
            mistyped key, or an unknown scorer.
    """
    from rescoring.scorers import SCORERS

    path = Path(path)
    with open_text(path) as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    where = at(path)
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {shown(obj)}")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a tuned.json has exactly "
            f"{', '.join(KEYS)} (re-run tune-rescoring)"
        )
    scorer = get_str(obj, "scorer", where)
    if scorer not in SCORERS:
        raise InputError(
            f"{where}: field 'scorer' must be one of {sorted(SCORERS)}, got {scorer!r}"
        )

    def resolve(key: str, nullable: bool) -> Path | None:
        v = get_str(obj, key, where, nonempty=True, nullable=nullable)
        return None if v is None else (path.parent / v).resolve()

    return TunedParams(
        scorer=scorer,
        lm_checkpoint=resolve("lm_checkpoint", nullable=True),
        nlu_checkpoint=resolve("nlu_checkpoint", nullable=True),
        lm_scale=get_number(obj, "lm_scale", where),
        word_bonus=get_number(obj, "word_bonus", where),
        dev_wer=get_number(obj, "dev_wer", where),
        dev_wer_first_pass=get_number(obj, "dev_wer_first_pass", where),
        tuned_on=resolve("tuned_on", nullable=False),
        grid_points=get_int(obj, "grid_points", where, minimum=1),
    )
