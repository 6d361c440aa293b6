"""Task-weight schedulers for the multitask objective ``w_lm*L_lm + w_intent*L_intent + w_slot*L_slot``.

One small interface (:class:`TaskWeightScheduler`) and a registry (:data:`SCHEDULERS`):

* ``fixed``  - the given weights at every step (LM-only training is ``1,0,0``).
* ``linear`` - w_lm as given; the NLU weights ramp linearly from 0 to their given value over
  ``ramp_steps`` optimizer steps: ``w_k(step) = w_k * min(1, step / ramp_steps)``.
* ``rwm``    - randomized weighted majority (Littlestone & Warmuth 1994) with the three tasks
  as experts; the exact rule is in :class:`RWMScheduler` and lm/README.md.

The trainer calls ``weights(step)`` before each step; a scheduler that wants dev signal
(``needs_dev``) gets ``update(step, dev_losses)`` every ``interval`` steps. Every scheduler
records its trajectory (``history``: ``[step, w_lm, w_intent, w_slot]`` rows) and has a
``state_dict`` of primitives, so it resumes exactly from a checkpoint.

Usage:
    sched = build_scheduler("rwm", base_weights=(1, 1, 1), eps=0.2, interval=50, seed=1)
    w = sched.weights(step)                # (w_lm, w_intent, w_slot)
    if sched.needs_dev and step % sched.interval == 0:
        sched.update(step, {"lm": 4.1, "intent": 0.3, "slot": 0.5})
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.io import InputError, atomic_write

TASKS = ("lm", "intent", "slot")


class TaskWeightScheduler:
    """Interface: maps the optimizer step (and, optionally, dev losses) to task weights."""

    name = "base"
    needs_dev = False
    interval = 0

    def __init__(self, base_weights: Sequence[float]):
        if len(base_weights) != 3:
            raise ValueError("base_weights: need (w_lm, w_intent, w_slot)")
        self.base = tuple(float(w) for w in base_weights)
        self.history: list[list[float]] = []

    def weights(self, step: int) -> tuple[float, float, float]:
        raise NotImplementedError

    def update(self, step: int, dev_losses: dict[str, float]) -> None:
        """Feed per-task dev losses (only called when ``needs_dev``)."""

    def record(self, step: int, w: Sequence[float]) -> None:
        if not self.history or self.history[-1][1:] != list(w):
            self.history.append([float(step), *map(float, w)])

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(r) for r in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [list(r) for r in state.get("history", [])]


class FixedScheduler(TaskWeightScheduler):
    """Constant task weights (``1,0,0`` is plain LM training)."""

    name = "fixed"

    def __init__(self, base_weights: Sequence[float]):
        super().__init__(base_weights)

    def weights(self, step: int) -> tuple[float, float, float]:
        self.record(step, self.base)
        return self.base


class LinearScheduler(TaskWeightScheduler):
    """Linear ramp of the NLU weights (curriculum of Yang et al., ASRU 2021):
    ``w_lm`` constant, ``w_intent, w_slot = base * min(1, step / ramp_steps)``."""

    name = "linear"

    def __init__(self, base_weights: Sequence[float], ramp_steps: int = 1000):
        super().__init__(base_weights)
        if ramp_steps <= 0:
            raise ValueError("ramp_steps must be > 0")
        self.ramp_steps = ramp_steps

    def weights(self, step: int) -> tuple[float, float, float]:
        r = min(1.0, max(0, step) / self.ramp_steps)
        w = (self.base[0], self.base[1] * r, self.base[2] * r)
        self.record(step, w)
        return w


class RWMScheduler(TaskWeightScheduler):
    """Randomized weighted majority over tasks (Littlestone & Warmuth, "The weighted majority
    algorithm", Information and Computation 108(2), 1994), as the task-weighting scheme of
    Yang et al., ASRU 2021. The seed work gives no formula; this is the rule we implement.

    State: one weight ``v_k`` per task k in (lm, intent, slot), ``v_k = 1`` at start.
    Every ``interval`` optimizer steps the trainer measures each task's dev loss ``D_k``
    (mean over a fixed dev subset) and calls :meth:`update`:

    1. relative improvement since the previous update: ``r_k = (D_k_prev - D_k) / D_k_prev``
       (the first call only stores ``D_k``);
    2. per-task loss in [0, 1]: ``l_k = clip(0.5 - r_k / (2 * scale), 0, 1)`` - a task whose
       dev loss fell by ``scale`` (relative) or more loses 0, a stalled task 0.5, a task whose
       dev loss rose by ``scale`` or more loses 1 (the expert "made a mistake");
    3. ``v_k <- v_k * (1 - eps) ** l_k``, then renormalise ``v`` to sum 1 (only the ratios
       matter; this avoids underflow);
    4. distribution ``p_k = floor + (1 - 3 * floor) * v_k / sum(v)`` (``floor`` keeps every
       task alive; ``floor = 0`` is plain RWM).

    Use of ``p`` (``use``):
        * ``scale`` (default): task weights ``w_k = 3 * p_k * base_k`` (equal ``p`` gives the
          base weights back);
        * ``sample``: at each step one task k is drawn from ``p`` (a seeded generator) and
          ``w = base_k`` for that task, 0 for the others - the randomized form of RWM.

    Tasks whose ``base_k`` is 0 are left out (``p_k = 0``). Effect: weight moves *away* from
    tasks whose dev loss stopped improving (converged or over-fitting) toward the ones still
    learning.
    """

    name = "rwm"
    needs_dev = True

    def __init__(
        self,
        base_weights: Sequence[float],
        eps: float = 0.2,
        interval: int = 100,
        scale: float = 0.05,
        use: str = "scale",
        floor: float = 0.05,
        seed: int = 0,
    ):
        super().__init__(base_weights)
        if not 0.0 < eps < 1.0:
            raise ValueError("eps must be in (0, 1)")
        if use not in ("scale", "sample"):
            raise ValueError("use must be 'scale' or 'sample'")
        if interval <= 0 or scale <= 0:
            raise ValueError("interval and scale must be > 0")
        self.eps, self.interval, self.scale, self.use, self.floor = eps, interval, scale, use, floor
        self.active = [b > 0 for b in self.base]
        self.v = [1.0 if a else 0.0 for a in self.active]
        self.prev: dict[str, float] | None = None
        self.rng = random.Random(seed)
        self.losses: list[list[float]] = []  # [step, l_lm, l_intent, l_slot] per update

    def probs(self) -> list[float]:
        k = sum(self.active)
        total = sum(self.v)
        floor = self.floor if k > 1 else 0.0
        return [
            (floor + (1 - k * floor) * v / total) if a else 0.0
            for v, a in zip(self.v, self.active, strict=True)
        ]

    def task_loss(self, prev: float, cur: float) -> float:
        """``l = clip(0.5 - r / (2 scale), 0, 1)`` with ``r`` the relative dev-loss drop."""
        if not (math.isfinite(prev) and math.isfinite(cur)) or prev <= 0:
            return 1.0
        r = (prev - cur) / prev
        return min(1.0, max(0.0, 0.5 - r / (2 * self.scale)))

    def update(self, step: int, dev_losses: dict[str, float]) -> None:
        cur = {t: float(dev_losses[t]) for t in TASKS}
        if self.prev is not None:
            ls = [
                self.task_loss(self.prev[t], cur[t]) if a else 0.0
                for t, a in zip(TASKS, self.active, strict=True)
            ]
            self.v = [v * (1 - self.eps) ** loss for v, loss in zip(self.v, ls, strict=True)]
            total = sum(self.v)
            self.v = [v / total for v in self.v]
            self.losses.append([float(step), *ls])
        self.prev = cur

    def weights(self, step: int) -> tuple[float, float, float]:
        p = self.probs()
        if self.use == "scale":
            w = tuple(3 * pk * b for pk, b in zip(p, self.base, strict=True))
            self.record(step, w)
        else:
            k = self.rng.choices(range(3), weights=p)[0]
            w = tuple(b if i == k else 0.0 for i, b in enumerate(self.base))
            self.record(step, [3 * pk * b for pk, b in zip(p, self.base, strict=True)])
        return w  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        st = super().state_dict()
        rng_state = self.rng.getstate()
        st.update(
            v=list(self.v),
            prev=dict(self.prev) if self.prev is not None else None,
            losses=[list(r) for r in self.losses],
            rng=[rng_state[0], list(rng_state[1]), rng_state[2]],
        )
        return st

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.v = list(state["v"])
        self.prev = dict(state["prev"]) if state["prev"] is not None else None
        self.losses = [list(r) for r in state.get("losses", [])]
        r = state["rng"]
        self.rng.setstate((r[0], tuple(r[1]), r[2]))


SCHEDULERS: dict[str, type[TaskWeightScheduler]] = {
    cls.name: cls for cls in (FixedScheduler, LinearScheduler, RWMScheduler)
}


def _options(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "base_weights"}


def build_scheduler(name: str, base_weights: Sequence[float], **kwargs: Any) -> TaskWeightScheduler:
    """Instantiate a registered scheduler from one shared set of options.

    ``train-lm`` has one option set for every scheduler (``ramp_steps``, ``eps``, ...): each
    scheduler gets the ones its constructor takes. An option that no registered scheduler
    takes is a misspelling and raises ``TypeError``; an unknown ``name`` raises
    :class:`InputError`.
    """
    if name not in SCHEDULERS:
        raise InputError(
            f"unknown task-weight scheduler {name!r}; choose from {sorted(SCHEDULERS)}"
        )
    known = set().union(*(_options(c) for c in SCHEDULERS.values()))
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"build_scheduler: no scheduler takes {unknown}")
    cls = SCHEDULERS[name]
    return cls(base_weights, **{k: v for k, v in kwargs.items() if k in _options(cls)})


def plot_history(sched: TaskWeightScheduler, path: Path, title: str = "") -> None:
    """Plot the task-weight trajectory (step vs w_lm, w_intent, w_slot) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sched.history
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        # the weights hold until the next recorded change: draw steps
        steps = [r[0] for r in rows]
        for j, task in enumerate(TASKS, start=1):
            ax.step(steps, [r[j] for r in rows], where="post", label=f"w_{task}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("task weight")
    ax.set_title(title or f"task weights ({sched.name})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
