"""Shared pieces of ``python -m benchmarks``: interleaved A/B timing, model steps, peak memory in a subprocess."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import vidprior

CL = torch.channels_last_3d
# frames per clip in each backbone's paper setting (SlowFast reads 32 frames: slow 4 or 8 of them, fast all)
FRAMES = {"slowonly50": 8, "csn50": 8, "x3d_s": 13, "slowfast50_8x8": 32, "slowfast50_4x16": 32, "r2plus1d18": 8}
SMALL_FRAMES = {"slowonly_tiny": 4, "csn_tiny": 4, "x3d_tiny": 4, "slowfast_tiny": 8, "r2plus1d_tiny": 4}


@dataclass
class Setting:
    batch: int
    size: int
    repeats: int
    warmup: int


def interleaved(fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each function, called in turn (A B C A B C ...) so load hits all alike."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def paired_ratio(fns: dict[str, Callable[[], object]], a: str, b: str, *, repeats: int, warmup: int) -> float:
    """Median over rounds of time(a) / time(b), the two timed back to back in each round."""
    for _ in range(warmup):
        fns[a]()
        fns[b]()
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fns[a]()
        t1 = time.perf_counter()
        fns[b]()
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios)


def clip(name: str, s: Setting, *, channels_last: bool = False) -> torch.Tensor:
    frames = FRAMES.get(name) or SMALL_FRAMES.get(name, 8)
    x = torch.randn(s.batch, 3, frames, s.size, s.size)
    return x.contiguous(memory_format=CL) if channels_last else x


def train_step(model: nn.Module, x: torch.Tensor, num_classes: int) -> Callable[[], None]:
    """forward, cross-entropy, backward, SGD step (the issue's definition of a training step)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    y = torch.randint(0, num_classes, (x.shape[0],))
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def build(name: str, *, sts: bool, channels_last: bool, num_classes: int = 400, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # the same weights with and without STS
    model = vidprior.create_model(name, num_classes=num_classes, sts=sts)
    return model.to(memory_format=CL) if channels_last else model


def peak_rss_mib(name: str, *, sts: bool, batch: int, size: int) -> float:
    """Peak resident memory (MiB) of a fresh process that builds ``name`` and runs two training steps."""
    code = (
        "import resource, sys, torch, json\n"
        "sys.argv = ['x']\n"
        "from benchmarks._core import build, clip, train_step, Setting\n"
        f"m = build({name!r}, sts={sts}, channels_last=False)\n"
        f"x = clip({name!r}, Setting({batch}, {size}, 1, 0))\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "s = train_step(m, x, 400); s(); s()\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900, cwd=root
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))
