"""The three jobs users run: image pre-training, spatiotemporal fine-tuning, multi-view testing (and a dry run).

Each takes a validated :class:`~vidprior.engine.config.RunCfg`; the CLI (``vidprior pretrain|finetune|test``) only
parses arguments and calls these. What a run is made of comes from :mod:`vidprior.engine.assembly`; device
placement and DDP wrapping from :class:`~vidprior.engine.trainer.Trainer`; scores and metrics from
:mod:`vidprior.engine.evaluate`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vidprior.data.lists import Record
from vidprior.data.sampling import make_sampler
from vidprior.engine.assembly import build_model, image_dataset, macs_per_sample, records_hash, video_dataset
from vidprior.engine.callbacks import Callback
from vidprior.engine.config import ConfigError, RunCfg, check_paths, save_yaml, validate
from vidprior.engine.distributed import env_world, init_distributed, is_main, peer_errors
from vidprior.errors import VidpriorError


# ------------------------------------------------------------------------------------------------ run folder
def prepare_run(cfg: RunCfg, *, world_size: int, records: list[Record]) -> dict[str, Any]:
    run = Path(cfg.out)
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / f".write_test.{os.getpid()}"  # one per process: ranks check at the same time
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"out={cfg.out!r}: the run folder is not writable ({e})") from None
    from vidprior.utils.env import environment

    env = {**environment(), "world_size": world_size, "data_hash": records_hash(records), "samples": len(records)}
    if is_main():
        save_yaml(cfg, run / "config.yaml")
        (run / "environment.json").write_text(json.dumps(env, indent=2))
    return env


def _device() -> torch.device:
    _, _, local = env_world()
    return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")


def dry_run(cfg: RunCfg) -> str:
    """Check config, output folder and the first files of the data; load nothing heavy."""
    check_paths(cfg)
    split = "train" if cfg.task != "test" else ("test" if cfg.data.test else "val")
    image = cfg.task == "pretrain"
    ds, records, _ = (image_dataset if image else video_dataset)(cfg, split, train=cfg.task != "test")
    ds.tracker.max_bad_fraction = 1.0
    n = min(2, len(ds))
    for i in range(n):
        ds[i]
    bad = ds.skipped
    prepare_run(cfg, world_size=env_world()[1], records=records)
    if bad:
        raise VidpriorError(f"dry run: {len(bad)} of the first {n} samples are bad: {bad}")
    return f"dry run ok: config valid, {cfg.out} writable, {len(records)} {split} samples, first {n} load"


# ------------------------------------------------------------------------------------------------ jobs
def run_training(
    cfg: RunCfg,
    *,
    resume: str | None = None,
    allow_config_change: bool = False,
    allow_restart: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Pre-train (``cfg.task == "pretrain"``, the model's 2D counterpart on images) or fine-tune (video); the run's
    summary. ``callbacks``: see :mod:`vidprior.engine.callbacks`."""
    from vidprior.engine.trainer import Trainer

    device = _device()
    rank, world = init_distributed(device)
    validate(cfg, world_size=world)
    check_paths(cfg)
    torch.manual_seed(cfg.train.seed)
    image = cfg.task == "pretrain"
    if image:
        train_set, records, _ = image_dataset(cfg, "train", train=True)
        val_set = image_dataset(cfg, "val", train=False)[0] if cfg.data.val else None
    else:
        train_set, records, _ = video_dataset(cfg, "train", train=True)
        val_set = video_dataset(cfg, "val", train=False)[0] if cfg.data.val else None
    run_env = prepare_run(cfg, world_size=world, records=records)
    model = build_model(cfg)
    frames = 1 if image else make_sampler(cfg.data.geometry).frames
    if image:
        from vidprior.models import image_model

        model = image_model(model, tap=cfg.init.tap)  # tap != 0: a temporal side slice (Table 1 probing)
        shape: tuple[int, ...] = (1, 3, cfg.data.crop_size, cfg.data.crop_size)
    else:
        shape = (1, 3, frames, cfg.data.crop_size, cfg.data.crop_size)
    mixup = None
    t = cfg.train
    if t.mixup > 0 or t.cutmix > 0:
        from vidprior.data.mixup import VideoMixup

        mixup = VideoMixup(
            num_classes=cfg.model.num_classes,
            mixup_alpha=t.mixup,
            cutmix_alpha=t.cutmix,
            label_smoothing=t.label_smoothing,
        )
    trainer = Trainer(
        cfg,
        model,
        train_set,
        val_set,
        kind="image" if image else "video",
        device=device,
        rank=rank,
        world_size=world,
        frames_per_sample=frames,
        macs_per_sample=macs_per_sample(model, shape),
        mixup=mixup,
        allow_config_change=allow_config_change,
        allow_restart=allow_restart,
        run_env=run_env,
        callbacks=callbacks,
    )
    with peer_errors():  # a stuck or lost peer: one line, within the time-out
        return trainer.fit(resume=resume, progress=progress)


def run_test(cfg: RunCfg, *, weights: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Multi-view test: softmax averaged over clips x crops; top-1, top-5, mean class accuracy; predictions file
    (video id, label, top-5 classes and scores) and a confusion-matrix picture in the run folder."""
    from vidprior.data.loader import checked_loader  # bad files counted here for all workers; one-line errors
    from vidprior.engine.evaluate import evaluate, write_test_report

    device = _device()
    check_paths(cfg)
    split = "test" if cfg.data.test else "val"
    ds, records, names = video_dataset(
        cfg, split, train=False, num_clips=cfg.data.test_clips, crops=cfg.data.test_crops
    )
    prepare_run(cfg, world_size=1, records=records)
    model = build_model(cfg)
    if weights:
        from vidprior.utils.io import load_state_dict_file

        state = load_state_dict_file(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise VidpriorError(
                f"{weights}: does not match {cfg.model.name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    model.to(device).eval()
    loader = checked_loader(torch.utils.data.DataLoader(ds, batch_size=1, num_workers=cfg.data.workers))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ds), desc="testing", unit="video", dynamic_ncols=True)
    t0 = time.monotonic()

    def inputs(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["video"].to(device), torch.as_tensor(batch["label"]).to(device)  # (1, V, C, T, H, W), (1,)

    ev = evaluate(model, loader, inputs, sample_dims=4, keep_scores=True, on_batch=bar.update if bar else None)
    if bar:
        bar.close()
    metrics = write_test_report(ev, Path(cfg.out), names)
    metrics["seconds"] = time.monotonic() - t0
    (Path(cfg.out) / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
