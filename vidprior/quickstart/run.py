"""``vidprior quickstart``: the paper's comparison in miniature under a fixed budget (paper §3.3, Table 6).

For a tiny 3x1x1 model (SlowOnly-style) and a tiny depthwise 3x3x3 model (CSN-style), on the appearance task
(Kinetics-like) and the temporal task (SSv2-like):

  (a) from scratch on video, with the same number of images seen as (b)-(d);
  (b) image pre-training, then fine-tuning with centre initialisation (zero-init side taps);
  (c) as (b), with STS;
  (d) as (c), with mean (I3D) inflation instead of centre.

Every step runs the real ``pretrain`` / ``finetune`` / ``test`` code with the recipes in ``configs/quickstart/``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidprior.engine import jobs
from vidprior.engine.config import PACKAGED_RECIPES, load_config
from vidprior.quickstart.data import Spec, build

CONFIGS = PACKAGED_RECIPES / "quickstart"
MODELS = {"slowonly_tiny": "SlowOnly-style (3x1x1)", "csn_tiny": "CSN-style (depthwise 3x3x3)"}
TASKS = {"appearance": "appearance (Kinetics-like)", "temporal": "temporal (SSv2-like)"}
SETTINGS = {
    "a": "from scratch",
    "b": "pre-train + fine-tune (centre init)",
    "c": "+ STS",
    "d": "+ STS, mean inflation",
}
SPEC = Spec(sprite=20, images_per_digit=200, videos_train=400, videos_val=200)
PRETRAIN_EPOCHS = 6
FINETUNE_EPOCHS = 4


@dataclass
class Result:
    model: str
    task: str
    setting: str
    seed: int
    top1: float
    images_seen: float
    seconds: float
    run_dir: str


def _config_path() -> Path:
    if not (CONFIGS / "pretrain.yaml").is_file():  # installed without the repository's configs
        raise FileNotFoundError(f"quickstart recipes not found in {CONFIGS}")
    return CONFIGS


def _data_overrides(data: Path, task: str) -> list[str]:
    if task == "appearance":
        a = data / "appearance"
        return [
            f"data.train={a / 'train.txt'}",
            f"data.val={a / 'val.txt'}",
            f"data.root={a}",
            f"data.test={a / 'val.txt'}",
        ]
    t = data / "temporal"
    return [
        f"data.train={t / 'train.json'}",
        f"data.val={t / 'validation.json'}",
        f"data.test={t / 'validation.json'}",
        f"data.root={t / 'videos'}",
        f"data.labels={t / 'labels.json'}",
    ]


def _pretrain(data: Path, out: Path, model: str, seed: int) -> tuple[Path, float, float]:
    cfg = load_config(
        _config_path() / "pretrain.yaml",
        [
            f"model.name={model}",
            f"data.train={data / 'images' / 'train'}",
            f"data.val={data / 'images' / 'val'}",
            f"optim.epochs={PRETRAIN_EPOCHS}",
            f"train.seed={seed}",
            f"out={out}",
        ],
    )
    summary = jobs.run_training(cfg, progress=False)
    return out / "best.safetensors", summary["images_seen"], summary["best_top1"] or 0.0


def _finetune(data: Path, out: Path, model: str, task: str, seed: int, extra: list[str]) -> tuple[float, float]:
    overrides = [f"model.name={model}", *_data_overrides(data, task), f"train.seed={seed}", f"out={out}", *extra]
    cfg = load_config(_config_path() / f"finetune_{task}.yaml", overrides)
    summary = jobs.run_training(cfg, progress=False)
    test_cfg = load_config(_config_path() / f"finetune_{task}.yaml", [*overrides, f"out={out / 'test'}", "task=test"])
    metrics = jobs.run_test(test_cfg, weights=str(out / "best.safetensors"), progress=False)
    return float(metrics["top1"]), float(summary["images_seen"])


def run(
    out: str | Path = "quickstart",
    *,
    seeds: int | None = None,
    time_budget_min: float = 8.0,
    models: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the comparison; ``seeds=None`` runs as many seeds as fit in ``time_budget_min`` (at least one)."""
    out = Path(out)
    t_start = time.monotonic()
    data = build(out / "data", SPEC, progress=progress)
    models = models or list(MODELS)
    results: list[Result] = []
    budget: dict[str, float] = {}
    frames = 8
    video_images = FINETUNE_EPOCHS * SPEC.videos_train * frames
    total_steps = len(models) * len(TASKS) * len(SETTINGS) + len(models)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps * (seeds or 1), desc="quickstart", unit="run", dynamic_ncols=True)
    seed = 0
    per_seed = 0.0
    while True:
        t_seed = time.monotonic()
        for model in models:
            runs = out / "runs" / f"seed{seed}" / model
            weights, pre_images, pre_top1 = _pretrain(data, runs / "pretrain", model, seed)
            budget.setdefault("pretrain_images", pre_images)
            results.append(Result(model, "images", "pretrain", seed, pre_top1, pre_images, 0.0, str(runs / "pretrain")))
            if bar:
                bar.update()
            # (a) gets the same total number of images seen as (b)-(d): pre-training + fine-tuning
            scratch_epochs = max(1, round((pre_images + video_images) / (SPEC.videos_train * frames)))
            budget["scratch_epochs"] = scratch_epochs
            init = ["init.source=image", f"init.checkpoint={weights}", f"optim.epochs={FINETUNE_EPOCHS}"]
            settings = {
                "a": [f"optim.epochs={scratch_epochs}"],
                "b": [*init, "init.mode=center"],
                "c": [*init, "init.mode=center", "model.sts=true"],
                "d": [*init, "init.mode=mean", "model.sts=true"],
            }
            for task in TASKS:
                for key, extra in settings.items():
                    t0 = time.monotonic()
                    top1, images = _finetune(data, runs / f"{task}_{key}", model, task, seed, extra)
                    total = images + (pre_images if key != "a" else 0)
                    results.append(
                        Result(model, task, key, seed, top1, total, time.monotonic() - t0, str(runs / f"{task}_{key}"))
                    )
                    if bar:
                        bar.set_postfix(model=model, task=task, setting=key, top1=f"{top1:.1f}")
                        bar.update()
        per_seed = time.monotonic() - t_seed
        seed += 1
        elapsed = time.monotonic() - t_start
        if seeds is not None:
            if seed >= seeds:
                break
        elif elapsed + per_seed > time_budget_min * 60:
            break
        if bar is not None and seeds is None:
            bar.total += total_steps
            bar.refresh()
    if bar:
        bar.close()
    from vidprior.quickstart.report import write_report

    summary = write_report(out, results, budget=budget, seconds=time.monotonic() - t_start, seeds=seed)
    return summary


def aggregate(results: list[Result]) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """(model, task, setting) -> (mean top-1, std, n)."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in results:
        groups.setdefault((r.model, r.task, r.setting), []).append(r.top1)
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def to_json(results: list[Result]) -> list[dict[str, Any]]:
    return [r.__dict__ for r in results]


__all__ = ["MODELS", "SETTINGS", "TASKS", "Result", "aggregate", "json", "run", "to_json"]
