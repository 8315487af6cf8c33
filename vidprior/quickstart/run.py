"""``vidprior quickstart``: the paper's comparison in miniature under a fixed budget (paper §3.3, Table 6).

For a tiny 3x1x1 model (SlowOnly-style) and a tiny depthwise 3x3x3 model (CSN-style), on the two-lane task
(SS-V2-like: the direction of the even digit), its control (the direction of the digit in the first lane) and the
appearance task (Kinetics-like), each setting of :data:`~vidprior.quickstart.results.SETTINGS`:

  (a) from scratch on video, with as many images seen as (b)-(d) see in pre-training plus fine-tuning;
  (b) image pre-training, then fine-tuning with centre initialisation (zero side taps);
  (b') as (b) with the side taps drawn at random (``init.side_taps=random``);
  (c) pre-training with STS, fine-tuning with STS and centre initialisation;
  (d) as (c) with mean (I3D) inflation instead of centre.

Every step runs the real ``pretrain`` / ``finetune`` / ``test`` code with the packaged recipes
``quickstart/*.yaml``. A :class:`Plan` says which models, tasks, settings and how many seeds; with a time budget
the runner adds (seed, model) units while the next one is expected to fit. Runs are seeded and deterministic on one
machine: fixed threads, deterministic algorithms, data built with a single-threaded encoder.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from vidprior.engine import jobs
from vidprior.engine.config import load_config, resolve_recipe
from vidprior.errors import VidpriorError
from vidprior.quickstart.data import Spec, build
from vidprior.quickstart.report import write_report
from vidprior.quickstart.results import MODELS, SETTINGS, TASKS, Result

THREADS = 2  # torch threads of every run: the same number on every machine gives the same numbers
DEFAULT_BUDGET_MIN = 9.0  # minutes: a unit that overruns its estimate still ends within 10
FRAMES = 8  # frames per clip of the recipes' "8x2" geometry


@dataclass(frozen=True)
class Plan:
    models: tuple[str, ...]
    tasks: tuple[str, ...]
    settings: tuple[str, ...]
    seeds: int  # at most this many; a time budget may stop earlier
    spec: Spec = field(default_factory=Spec)
    pretrain_epochs: int = 6  # 6 x 2,000 images: the first quickstart's pre-training budget
    finetune_epochs: int = 4

    def __post_init__(self) -> None:
        for name, given, known in (
            ("model", self.models, MODELS),
            ("task", self.tasks, TASKS),
            ("setting", self.settings, SETTINGS),
        ):
            bad = [g for g in given if g not in known]
            if bad or not given:
                raise VidpriorError(f"quickstart plan: unknown or no {name} {bad}; known: {', '.join(known)}")
        if self.seeds < 1:
            raise VidpriorError(f"quickstart plan: seeds={self.seeds}, expected at least 1")


PLANS = {
    # the contrast the quickstart is about, both families; seeds while they fit in the budget (docs/quickstart.md)
    "default": Plan(models=tuple(MODELS), tasks=("even", "control"), settings=("a", "b"), seeds=3),
    # every model, task and setting, three seeds
    "full": Plan(models=tuple(MODELS), tasks=tuple(TASKS), settings=tuple(SETTINGS), seeds=3),
    # a minute: checks that an installation runs end to end (numbers meaningless)
    "smoke": Plan(
        models=("slowonly_tiny",),
        tasks=("even",),
        settings=("a", "b"),
        seeds=1,
        spec=Spec(images_per_digit=8, videos_train=32, videos_val=8),
        pretrain_epochs=2,
        finetune_epochs=1,
    ),
}


@contextmanager
def deterministic(threads: int = THREADS) -> Iterator[None]:
    """Fixed torch threads and deterministic algorithms for the runs inside; the previous state after."""
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def _recipe(name: str) -> Path:
    # "configs/..." rather than "quickstart/...": the default output folder is ./quickstart
    return resolve_recipe(f"configs/quickstart/{name}.yaml")


def _data_overrides(data: Path, task: str) -> list[str]:
    if task == "appearance":
        a = data / "appearance"
        return [
            f"data.train={a / 'train.txt'}",
            f"data.val={a / 'val.txt'}",
            f"data.test={a / 'val.txt'}",
            f"data.root={a}",
        ]
    t = data / "twolane"
    prefix = "control_" if task == "control" else ""
    return [
        f"data.train={t / (prefix + 'train.json')}",
        f"data.val={t / (prefix + 'validation.json')}",
        f"data.test={t / (prefix + 'validation.json')}",
        f"data.root={t / 'videos'}",
        f"data.labels={t / 'labels.json'}",
    ]


def setting_overrides(
    setting: str, *, plain: Path | None, sts: Path | None, epochs: int, scratch_epochs: int
) -> list[str]:
    """Config overrides of one setting; ``plain`` / ``sts``: the pre-trained weights without / with STS."""
    init = ["init.source=image", f"optim.epochs={epochs}"]
    table = {
        "a": lambda: [f"optim.epochs={scratch_epochs}"],
        "b": lambda: [*init, f"init.checkpoint={plain}", "init.mode=center"],
        "b'": lambda: [*init, f"init.checkpoint={plain}", "init.mode=center", "init.side_taps=random"],
        "c": lambda: [*init, f"init.checkpoint={sts}", "init.mode=center", "model.sts=true"],
        "d": lambda: [*init, f"init.checkpoint={sts}", "init.mode=mean", "model.sts=true"],
    }
    return table[setting]()


def _load(recipe: str, overrides: list[str], what: str):
    try:
        return load_config(_recipe(recipe), overrides)
    except VidpriorError as e:
        raise VidpriorError(f"quickstart {what}: {e}") from None


def _preflight(plan: Plan, data: Path) -> None:
    """Load every config the plan will use before any training, so a setting this vidprior cannot run fails at
    once, not after minutes of other runs."""
    weights = data / "weights.safetensors"  # not read: only the config is checked here
    for task in plan.tasks:
        recipe = "finetune_appearance" if task == "appearance" else "finetune_temporal"
        for s in plan.settings:
            extra = setting_overrides(s, plain=weights, sts=weights, epochs=plan.finetune_epochs, scratch_epochs=1)
            _load(recipe, [*_data_overrides(data, task), *extra], f"task {task}, setting ({s}) {SETTINGS[s]}")


def _timed(fn):
    t0, c0 = time.monotonic(), time.process_time()
    value = fn()
    return value, time.monotonic() - t0, time.process_time() - c0


# Pre-training learning rate per model where it differs from the recipe's (measured: docs/quickstart.md)
PRETRAIN_LR = {"csn_tiny": 0.3}


def _pretrain(data: Path, out: Path, model: str, seed: int, plan: Plan, sts: bool) -> tuple[Path, dict]:
    overrides = [
        *([f"optim.lr={PRETRAIN_LR[model]}"] if model in PRETRAIN_LR else []),
        f"model.name={model}",
        f"data.train={data / 'images' / 'train'}",
        f"data.val={data / 'images' / 'val'}",
        f"optim.epochs={plan.pretrain_epochs}",
        f"train.seed={seed}",
        f"out={out}",
        *(["model.sts=true"] if sts else []),
    ]
    cfg = _load("pretrain", overrides, f"pre-training {model}{' with STS' if sts else ''}")
    return out / "best.safetensors", jobs.run_training(cfg, progress=False)


def _finetune(
    data: Path, out: Path, model: str, task: str, seed: int, extra: list[str], what: str
) -> tuple[float, float]:
    overrides = [f"model.name={model}", *_data_overrides(data, task), f"train.seed={seed}", f"out={out}", *extra]
    recipe = "finetune_appearance" if task == "appearance" else "finetune_temporal"
    cfg = _load(recipe, overrides, what)
    summary = jobs.run_training(cfg, progress=False)
    test_cfg = _load(recipe, [*overrides, f"out={out / 'test'}", "task=test"], what)
    metrics = jobs.run_test(test_cfg, weights=str(out / "best.safetensors"), progress=False)
    return float(metrics["top1"]), float(summary["images_seen"])


def _unit(data: Path, runs: Path, model: str, seed: int, plan: Plan, tick) -> tuple[list[Result], dict[str, Any]]:
    """Every run of one model at one seed: the pre-training(s) it needs, then each task and setting."""
    results, weights, pre_images = [], {}, 0.0
    needed = [("pretrain", False)] if any(s in ("b", "b'") for s in plan.settings) else []
    needed += [("pretrain_sts", True)] if any(s in ("c", "d") for s in plan.settings) else []
    for key, sts in needed:
        (path, summary), wall, cpu = _timed(partial(_pretrain, data, runs / key, model, seed, plan, sts))
        weights[key], pre_images = path, float(summary["images_seen"])
        top1 = float(summary["best_top1"] or 0.0)
        results.append(Result(model, "images", key, seed, top1, pre_images, wall, cpu, str(runs / key)))
        tick(model=model, run=key, top1=f"{top1:.1f}")
    epoch_images = plan.spec.videos_train * FRAMES
    video_images = plan.finetune_epochs * epoch_images
    # (a) sees as many images as (b)-(d): pre-training plus fine-tuning, to the nearest epoch
    scratch_epochs = max(1, round((pre_images + video_images) / epoch_images))
    budget = {"pretrain_images": pre_images, "finetune_images": video_images, "scratch_epochs": scratch_epochs}
    for task in plan.tasks:
        for s in plan.settings:
            extra = setting_overrides(
                s,
                plain=weights.get("pretrain"),
                sts=weights.get("pretrain_sts"),
                epochs=plan.finetune_epochs,
                scratch_epochs=scratch_epochs,
            )
            folder = runs / f"{task}_{s.replace(chr(39), '_side')}"
            what = f"{MODELS[model]}, task {task}, setting ({s}) {SETTINGS[s]}"
            job = partial(_finetune, data, folder, model, task, seed, extra, what)
            (top1, images), wall, cpu = _timed(job)
            seen = images + (pre_images if s != "a" else 0.0)
            results.append(Result(model, task, s, seed, top1, seen, wall, cpu, str(folder)))
            tick(model=model, task=task, setting=s, top1=f"{top1:.1f}")
    return results, budget


def run(
    out: str | Path = "quickstart",
    *,
    plan: Plan = PLANS["default"],
    time_budget_min: float | None = DEFAULT_BUDGET_MIN,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``plan``; with ``time_budget_min``, a (seed, model) unit starts only if it is expected to end within the
    budget (expected: the mean time of the finished units of that model). The first unit always runs."""
    out = Path(out)
    t_start, c_start = time.monotonic(), time.process_time()
    with deterministic():
        _preflight(plan, out / "data")
        data = build(out / "data", plan.spec, progress=progress)
        build_s = time.monotonic() - t_start
        units = [(seed, model) for seed in range(plan.seeds) for model in plan.models]
        runs_per_unit = len(plan.tasks) * len(plan.settings) + 2  # + the pre-trainings
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(units) * runs_per_unit, desc="quickstart", unit="run", dynamic_ncols=True)

        def tick(**info: str) -> None:
            if bar is not None:
                bar.set_postfix(**info)
                bar.update()

        results: list[Result] = []
        budget: dict[str, Any] = {}
        durations: dict[str, list[float]] = {}
        skipped: list[tuple[int, str]] = []
        for i, (seed, model) in enumerate(units):
            elapsed = time.monotonic() - t_start
            known = durations.get(model) or [d for v in durations.values() for d in v]
            if time_budget_min is not None and i > 0 and elapsed + statistics.mean(known) > time_budget_min * 60:
                skipped = units[i:]
                break
            t0 = time.monotonic()
            unit_results, budget = _unit(data, out / "runs" / f"seed{seed}" / model, model, seed, plan, tick)
            results += unit_results
            durations.setdefault(model, []).append(time.monotonic() - t0)
        if bar is not None:
            bar.close()
    timing = {
        "seconds": time.monotonic() - t_start,
        "cpu_seconds": time.process_time() - c_start,
        "build_seconds": build_s,
        "threads": THREADS,
        "skipped_units": [f"seed{s}/{m}" for s, m in skipped],
        "time_budget_min": time_budget_min,
    }
    return write_report(out, results, plan=asdict(plan), budget=budget, timing=timing)


__all__ = ["PLANS", "THREADS", "Plan", "deterministic", "run", "setting_overrides"]
