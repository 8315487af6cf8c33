"""The three jobs users run: image pre-training, spatiotemporal fine-tuning, multi-view testing.

Each takes a validated :class:`~vidprior.engine.config.RunCfg`; the CLI (``vidprior pretrain|finetune|test``) only
parses arguments and calls these. Construction (datasets, model, weights) is separate from device placement and
DDP wrapping (:class:`~vidprior.engine.trainer.Trainer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidprior.data.lists import Record, read_rawframe_list, read_ssv2, read_video_list, scan_image_folder
from vidprior.data.sampling import make_sampler
from vidprior.engine.config import VIDEO_FORMATS, ConfigError, RunCfg, check_paths, save_yaml, validate
from vidprior.engine.distributed import env_world, init_distributed, is_main
from vidprior.errors import VidpriorError


# ------------------------------------------------------------------------------------------------ data
def read_records(cfg: RunCfg, split: str) -> tuple[list[Record], list[str] | None]:
    """Records of ``data.<split>`` in ``data.format``; class names when the format carries them."""
    d = cfg.data
    path = getattr(d, split)
    if path is None:
        raise ConfigError(f"data.{split} is not set")
    if d.format == "ssv2":
        if d.labels is None:
            raise ConfigError("data.labels: the SSv2 labels.json is required for data.format='ssv2'")
        return read_ssv2(d.labels, path, root=d.root or Path(path).parent, suffix=d.video_suffix)
    if d.format == "rawframes":
        return read_rawframe_list(path, root=d.root), None
    if d.format == "imagefolder":
        return scan_image_folder(path)
    return read_video_list(path, root=d.root, classes=d.classes), None


def records_hash(records: list[Record]) -> str:
    """Identifies the data a run used (paths and labels), saved with the run and its checkpoints."""
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r.path}\t{r.label}\t{r.num_frames}\n".encode())
    return h.hexdigest()


def _is_ssv2(cfg: RunCfg) -> bool:
    return cfg.data.format == "ssv2"


def video_dataset(cfg: RunCfg, split: str, *, train: bool, num_clips: int = 1, crops: int = 1):
    from vidprior.data.datasets import RawFrameDataset, VideoDataset
    from vidprior.data.transforms import video_eval_transform, video_train_transform

    d = cfg.data
    records, names = read_records(cfg, split)
    if train:
        transform = video_train_transform(
            crop_size=d.crop_size,
            short_side=d.short_side,
            scale=tuple(d.scale),
            hflip=d.hflip,
            randaugment=d.randaugment,
            dataset="ssv2" if _is_ssv2(cfg) else None,
        )
    else:
        size = d.test_crop_size if (num_clips > 1 or crops > 1) else d.crop_size
        transform = video_eval_transform(crop_size=size, short_side=d.test_short_side, crops=crops)
    kw: dict[str, Any] = {
        "sampler": make_sampler(d.geometry, num_clips=num_clips),
        "train": train,
        "transform": transform,
        "seed": cfg.train.seed,
        "max_bad_fraction": d.max_bad_fraction,
        "report_path": Path(cfg.out) / f"skipped_{split}.jsonl",
    }
    if d.format == "rawframes":
        ds = RawFrameDataset(records, template=d.template, **kw)
    else:
        ds = VideoDataset(records, backend=d.backend, decode_timeout=d.decode_timeout, **kw)
    return ds, records, names


def image_dataset(cfg: RunCfg, split: str, *, train: bool):
    """The images of ``data.<split>`` for the pretrain task, through timm's image transforms.

    Image formats (``imagefolder``, ``imagelist``) give one sample per image (:class:`ImageDataset`). Video formats
    (``list``, ``ssv2``, ``rawframes``; paper Table 8: pre-training the 2D counterpart on Kinetics frames) give the
    frames of the videos as images with the video's label (:class:`VideoFramesDataset`): in training
    ``data.frames_per_video`` samples per video and epoch, a random frame of each equal part of the video; in
    validation the centre frame of each video. Flips follow ``data.hflip`` (unset: off for SSv2, whose labels have
    a direction, as for its videos)."""
    from vidprior.data.datasets import ImageDataset, VideoFramesDataset
    from vidprior.data.image import image_eval_transform, image_train_transform

    d = cfg.data
    records, names = read_records(cfg, split)
    if train:
        hflip = d.hflip if d.hflip is not None else not _is_ssv2(cfg)
        transform = image_train_transform(
            img_size=d.crop_size,
            auto_augment=d.randaugment,
            hflip=0.5 if hflip else 0.0,
            scale=tuple(d.scale),
        )
    else:
        transform = image_eval_transform(img_size=d.crop_size)
    common: dict[str, Any] = {
        "transform": transform,
        "seed": cfg.train.seed,
        "max_bad_fraction": d.max_bad_fraction,
        "report_path": Path(cfg.out) / f"skipped_{split}.jsonl",
    }
    if d.format in VIDEO_FORMATS:
        ds = VideoFramesDataset(
            records,
            frames_per_video=d.frames_per_video if train else 1,
            train=train,
            backend=d.backend,
            decode_timeout=d.decode_timeout,
            template=d.template if d.format == "rawframes" else None,
            **common,
        )
    else:
        ds = ImageDataset(records, **common)
    return ds, records, names


# ------------------------------------------------------------------------------------------------ model
def build_model(cfg: RunCfg, *, num_classes: int | None = None) -> nn.Module:
    """The 3D model of ``cfg.model`` with its initial weights (``cfg.init``) and STS placement."""
    from vidprior.models import apply_sts, create_model
    from vidprior.models.weight_sources import load_initial_weights

    m = cfg.model
    model = create_model(m.name, num_classes=num_classes or m.num_classes, dropout=m.dropout, **m.overrides)
    if m.sts:  # STS shares the convs' Parameters: weights load the same before or after
        sts_options = {k: getattr(m, k) for k in ("static_ratio", "static_mode", "static_dilation", "layout")}
        apply_sts(model, m.sts, **sts_options)
    i = cfg.init
    load_initial_weights(
        model,
        source=i.source,
        path=i.checkpoint,
        mode=i.mode,
        skip=i.skip,
        side_taps=i.side_taps,
        side_taps_scale=i.side_taps_scale,
    )
    return model


def macs_per_sample(model: nn.Module, shape: tuple[int, ...]) -> float:
    from vidprior.utils.complexity import profile

    return float(profile(model, shape).macs)


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
def run_training(cfg: RunCfg, *, resume: str | None = None, allow_config_change: bool = False, progress: bool = True):
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
        run_env=run_env,
    )
    return trainer.fit(resume=resume, progress=progress)


def run_test(cfg: RunCfg, *, weights: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Multi-view test: softmax averaged over clips x crops; top-1, top-5, mean class accuracy; predictions file
    (video id, label, top-5 classes and scores) and a confusion-matrix picture in the run folder."""
    from vidprior.engine.metrics import confusion_matrix, draw_confusion, mean_class_accuracy, topk_correct

    device = _device()
    check_paths(cfg)
    split = "test" if cfg.data.test else "val"
    ds, records, names = video_dataset(
        cfg, split, train=False, num_clips=cfg.data.test_clips, crops=cfg.data.test_crops
    )
    prepare_run(cfg, world_size=1, records=records)
    run = Path(cfg.out)
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
    from vidprior.data.loader import checked_loader  # bad files counted here for all workers; one-line errors

    loader = checked_loader(torch.utils.data.DataLoader(ds, batch_size=1, num_workers=cfg.data.workers))
    rows, all_scores, all_labels = [], [], []
    views = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ds), desc="testing", unit="video", dynamic_ncols=True)
    t0 = time.monotonic()
    with torch.no_grad():
        for batch in loader:
            x = batch["video"].to(device)  # (1, V, C, T, H, W)
            views = x.shape[1]
            scores = model(x.flatten(0, 1)).float().softmax(-1).mean(0, keepdim=True)  # average over views
            label = int(batch["label"][0])
            top = scores[0].topk(min(5, scores.shape[1]))
            rows.append(
                {
                    "video_id": batch["video_id"][0],
                    "label": label,
                    "top5": top.indices.tolist(),
                    "scores": [round(s, 6) for s in top.values.tolist()],
                }
            )
            all_scores.append(scores.cpu())
            all_labels.append(label)
            if bar:
                bar.update()
    if bar:
        bar.close()
    scores = torch.cat(all_scores)
    labels = torch.tensor(all_labels)
    labelled = labels >= 0
    metrics: dict[str, Any] = {"videos": len(rows), "views": views}
    if labelled.any():
        hits = topk_correct(scores[labelled], labels[labelled])
        n = int(labelled.sum())
        cm = confusion_matrix(scores[labelled].argmax(1), labels[labelled], scores.shape[1])
        metrics.update(
            top1=100 * hits[1] / n, top5=100 * hits[5] / n, mean_class_accuracy=100 * mean_class_accuracy(cm)
        )
        draw_confusion(cm, run / "confusion.png", names)
    metrics["seconds"] = time.monotonic() - t0
    with open(run / "predictions.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (run / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
