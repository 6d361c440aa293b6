"""Does CPU bf16 autocast pay on this host? Time the same small training steps in fp32 and
under ``torch.autocast("cpu", dtype=torch.bfloat16)``, one thread, alternating, and say yes
(exit status 0) when bf16 is at least ``--min-speedup`` times faster, no (1) otherwise.

The recipes ask this once per work dir (``cpu_bf16_pays`` in recipes/common/host.sh) before
they choose a preset's bf16 branch (``train-asr`` / ``train-lm --cpu-bf16 true``). The CPU flag
alone (``avx512_bf16``) does not tell: on an "AMD EPYC" host with it, bf16 made RNN-T steps
1.41x and LM steps 1.65x faster; on an "Intel Xeon" host with the same flag and no AMX (session
36) it made RNN-T steps 0.92x and LM steps 0.65x as fast, and the recipe's bf16 branch took
1.8-2.3x longer there in its trainings than on the AMD host (recipes/snips/RESULTS.md, "A host
where bf16 does not pay").

The steps: an LSTM language model (embedding, one LSTM layer, output layer; as ``train-lm`` and
the RNN-T's predictor) and a Conformer-sized feed-forward block (as the RNN-T's encoder), each
forward + backward + AdamW step on fixed random data. The decision compares the sums of the
fastest of each kind's rounds (fastest-of: a busy moment of the host slows one round, not the
answer).

Usage:
    check-bf16 [--rounds 5] [--min-speedup 1.1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from common.io import InputError, atomic_write

#: bf16 must be this many times faster to be used: a small gain is not worth a branch whose
#: numbers differ from fp32's
DEFAULT_MIN_SPEEDUP = 1.1


def onednn_bf16() -> bool:
    """Whether PyTorch's oneDNN has bf16 kernels on this CPU (native bf16: avx512_bf16 or AMX).
    Without them an LSTM under CPU bf16 autocast fails ("could not create a primitive descriptor
    for the LSTM forward propagation primitive"; session 37, an "AMD EPYC" host with AVX2 only).
    A torch without the probe counts as yes (the autocast run then tells)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def require_cpu_bf16(option: str = "--cpu-bf16 true") -> None:
    """Raise :class:`InputError` naming ``option`` where :func:`onednn_bf16` says no."""
    if not onednn_bf16():
        raise InputError(
            f"{option}: this CPU has no native bf16 (PyTorch's oneDNN has no bf16 kernels "
            "here: no avx512_bf16 / AMX), so LSTM steps cannot run under bf16 autocast; "
            "train in fp32 (--cpu-bf16 false)"
        )


class _LstmLm(nn.Module):
    def __init__(self, vocab: int = 500, embed: int = 256, hidden: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(self.embed(x))[0])


def _workloads(seed: int = 0) -> dict[str, Callable[[], None]]:
    """name -> one training step (forward, loss, backward, AdamW) of that model on fixed data."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lm = _LstmLm()
    tokens = torch.randint(0, 500, (16, 64), generator=g)
    ffn = nn.Sequential(nn.LayerNorm(144), nn.Linear(144, 576), nn.SiLU(), nn.Linear(576, 144))
    frames = torch.randn(16, 200, 144, generator=g)
    opt_lm = torch.optim.AdamW(lm.parameters(), lr=1e-4)
    opt_ffn = torch.optim.AdamW(ffn.parameters(), lr=1e-4)

    def lm_step() -> None:
        logits = lm(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        opt_lm.zero_grad()
        loss.backward()
        opt_lm.step()

    def ffn_step() -> None:
        loss = (ffn(frames).float() - frames).pow(2).mean()
        opt_ffn.zero_grad()
        loss.backward()
        opt_ffn.step()

    return {"lstm_lm": lm_step, "ffn": ffn_step}


def measure(rounds: int = 5, steps: int = 3, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per workload and dtype (``fp32``, ``bf16``): the fastest of ``rounds`` rounds of ``steps``
    steps, in seconds, after one untimed round. The dtypes alternate round by round."""
    torch.set_num_threads(1)
    work = {dtype: _workloads(seed) for dtype in ("fp32", "bf16")}
    best: dict[str, dict[str, float]] = {name: {} for name in work["fp32"]}
    for r in range(rounds + 1):
        for dtype, steps_of in work.items():
            for name, step in steps_of.items():
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    for _ in range(steps):
                        step()
                sec = time.perf_counter() - t0
                if r:  # round 0 warms up (allocations, kernel selection)
                    best[name][dtype] = min(best[name].get(dtype, sec), sec)
    return best


def decide(times: dict[str, dict[str, float]], min_speedup: float = DEFAULT_MIN_SPEEDUP) -> dict:
    """The report of :func:`measure`'s ``times``: per workload and in all, fp32 seconds / bf16
    seconds, and ``pays`` = the overall speed-up is at least ``min_speedup``."""
    if not times or any(set(t) != {"fp32", "bf16"} for t in times.values()):
        raise ValueError(f"times need fp32 and bf16 seconds per workload, got {times}")
    if any(not s > 0 for t in times.values() for s in t.values()):
        raise ValueError(f"times must be positive seconds, got {times}")
    fp32 = sum(t["fp32"] for t in times.values())
    bf16 = sum(t["bf16"] for t in times.values())
    return {
        "seconds": times,
        "speedup": {name: t["fp32"] / t["bf16"] for name, t in times.items()}
        | {"all": fp32 / bf16},
        "min_speedup": min_speedup,
        "pays": fp32 / bf16 >= min_speedup,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="check-bf16",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 bf16 pays, 1 it does not, 2 bad options.",
    )
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per workload and dtype")
    p.add_argument("--steps", type=int, default=3, help="training steps per round")
    p.add_argument(
        "--min-speedup",
        type=float,
        default=DEFAULT_MIN_SPEEDUP,
        help="bf16 pays when fp32 seconds / bf16 seconds is at least this",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or not args.min_speedup > 0:
        p.error("--rounds and --steps must be >= 1 and --min-speedup > 0")
    if onednn_bf16():
        report = decide(measure(args.rounds, args.steps), args.min_speedup)
    else:  # nothing to time: bf16 LSTM steps fail on such a CPU
        report = {
            "pays": False,
            "min_speedup": args.min_speedup,
            "reason": "no native bf16 on this CPU (oneDNN has no bf16 kernels): not measured",
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        with atomic_write(args.json) as f:
            f.write(text + "\n")
    sys.exit(0 if report["pays"] else 1)


if __name__ == "__main__":
    main()
