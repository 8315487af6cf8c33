"""The quickstart's numbers: one :class:`Result` per run, their mean and spread over seeds, and comparisons.

Shared by the runner (which makes results) and the report (which reads them), so neither imports the other.
A difference *exceeds the seed spread* when the difference of the two means is larger than the sum of the two
standard deviations over seeds; with one seed the spread is unknown and no comparison is called.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

MODELS = {"slowonly_tiny": "SlowOnly-style (3x1x1)", "csn_tiny": "CSN-style (depthwise 3x3x3)"}
TASKS = {
    "even": "even digit's direction (SS-V2-like)",
    "control": "first lane's direction (control)",
    "appearance": "digit identity (Kinetics-like)",
}
SETTINGS = {
    "a": "from scratch",
    "b": "pre-train, centre init",
    "b'": "pre-train, side taps random",
    "c": "+ STS (pre-trained with STS)",
    "d": "+ STS, mean inflation",
}


@dataclass
class Result:
    model: str
    task: str  # a key of TASKS, or "images" for the pre-training run
    setting: str  # a key of SETTINGS, or "pretrain" / "pretrain_sts"
    seed: int
    top1: float
    images_seen: float
    seconds: float  # wall time of the run (training and test)
    cpu_seconds: float  # CPU time of the process during the run (all threads)
    run_dir: str


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int
    values: tuple[float, ...]


@dataclass(frozen=True)
class Comparison:
    model: str
    task: str
    first: str  # setting compared ...
    second: str  # ... against this one
    diff: float  # mean(first) - mean(second), points of top-1
    spread: float  # std(first) + std(second) over seeds
    n: int  # seeds of the smaller group

    @property
    def exceeds(self) -> bool | None:
        """Whether the difference exceeds the seed spread; None with fewer than two seeds."""
        return None if self.n < 2 else abs(self.diff) > self.spread

    def verdict(self) -> str:
        if self.exceeds is None:
            return "one seed, spread unknown"
        return "exceeds the seed spread" if self.exceeds else "within the seed spread"


def stat(values: list[float]) -> Stat:
    return Stat(
        statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values), tuple(values)
    )


def aggregate(results: list[Result]) -> dict[tuple[str, str, str], Stat]:
    """(model, task, setting) -> top-1 over seeds."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in results:
        groups.setdefault((r.model, r.task, r.setting), []).append(r.top1)
    return {k: stat(v) for k, v in groups.items()}


def compare(agg: dict[tuple[str, str, str], Stat], model: str, task: str, first: str, second: str) -> Comparison | None:
    a, b = agg.get((model, task, first)), agg.get((model, task, second))
    if a is None or b is None:
        return None
    return Comparison(model, task, first, second, a.mean - b.mean, a.std + b.std, min(a.n, b.n))


def paired_gain(results: list[Result], model: str, task: str, first: str, second: str) -> dict[int, float]:
    """Per seed: top-1 of ``first`` minus top-1 of ``second`` (same seed, so the same pre-training)."""
    by = {(r.seed, r.setting): r.top1 for r in results if r.model == model and r.task == task}
    return {s: by[(s, first)] - by[(s, second)] for s, k in by if k == first and (s, second) in by}


def to_json(results: list[Result]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


__all__ = [
    "MODELS",
    "SETTINGS",
    "TASKS",
    "Comparison",
    "Result",
    "Stat",
    "aggregate",
    "compare",
    "paired_gain",
    "stat",
    "to_json",
]
