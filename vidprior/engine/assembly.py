"""What a run is made of, built from a validated :class:`~vidprior.engine.config.RunCfg`: the records and datasets
of a split (through the format table :data:`vidprior.data.formats.FORMATS`), and the model with its initial weights.

Nothing here places anything on a device or wraps it for DDP (:class:`~vidprior.engine.trainer.Trainer` does).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from vidprior.data.formats import get_format
from vidprior.data.lists import Record
from vidprior.data.sampling import make_sampler
from vidprior.engine.config import ConfigError, RunCfg


# ------------------------------------------------------------------------------------------------ data
def read_records(cfg: RunCfg, split: str) -> tuple[list[Record], list[str] | None]:
    """Records of ``data.<split>`` in ``data.format``; class names when the format carries them."""
    path = getattr(cfg.data, split)
    if path is None:
        raise ConfigError(f"data.{split} is not set")
    return get_format(cfg.data.format).read(path, cfg.data)


def records_hash(records: list[Record]) -> str:
    """Identifies the data a run used (paths and labels), saved with the run and its checkpoints."""
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r.path}\t{r.label}\t{r.num_frames}\n".encode())
    return h.hexdigest()


def _common(cfg: RunCfg, split: str) -> dict[str, Any]:
    return {
        "seed": cfg.train.seed,
        "max_bad_fraction": cfg.data.max_bad_fraction,
        "report_path": Path(cfg.out) / f"skipped_{split}.jsonl",
    }


def video_dataset(cfg: RunCfg, split: str, *, train: bool, num_clips: int = 1, crops: int = 1):
    """Clips of a video format: one random clip per video in training, ``num_clips`` x ``crops`` views otherwise.
    Returns ``(dataset, records, class names or None)``."""
    from vidprior.data.transforms import video_eval_transform, video_train_transform

    d = cfg.data
    fmt = get_format(d.format)
    if fmt.clips is None:
        raise ConfigError(f"data.format={d.format!r} holds images; task {cfg.task} needs a video format")
    records, names = read_records(cfg, split)
    if train:
        transform = video_train_transform(
            crop_size=d.crop_size,
            short_side=d.short_side,
            scale=tuple(d.scale),
            hflip=d.hflip,  # None: the format's default (flip_name)
            randaugment=d.randaugment,
            dataset=fmt.flip_name,
        )
    else:
        size = d.test_crop_size if (num_clips > 1 or crops > 1) else d.crop_size
        transform = video_eval_transform(crop_size=size, short_side=d.test_short_side, crops=crops)
    ds = fmt.clips(
        records,
        template=d.template,
        backend=d.backend,
        decode_timeout=d.decode_timeout,
        sampler=make_sampler(d.geometry, num_clips=num_clips),
        train=train,
        transform=transform,
        **_common(cfg, split),
    )
    return ds, records, names


def image_dataset(cfg: RunCfg, split: str, *, train: bool):
    """The images of ``data.<split>`` for the pretrain task, through timm's image transforms.

    Image formats (``imagefolder``, ``imagelist``) give one sample per image (:class:`ImageDataset`). Video formats
    (``list``, ``ssv2``, ``rawframes``; paper Table 8: pre-training the 2D counterpart on Kinetics frames) give the
    frames of the videos as images with the video's label (:class:`VideoFramesDataset`): in training
    ``data.frames_per_video`` samples per video and epoch, a random frame of each equal part of the video; in
    validation the centre frame of each video. Flips follow ``data.hflip`` (unset: the format's default, off for
    SSv2, whose labels have a direction, as for its videos)."""
    from vidprior.data.datasets import ImageDataset, VideoFramesDataset
    from vidprior.data.image import image_eval_transform, image_train_transform

    d = cfg.data
    fmt = get_format(d.format)
    records, names = read_records(cfg, split)
    if train:
        hflip = d.hflip if d.hflip is not None else fmt.default_hflip()
        transform = image_train_transform(
            img_size=d.crop_size,
            auto_augment=d.randaugment,
            hflip=0.5 if hflip else 0.0,
            scale=tuple(d.scale),
        )
    else:
        transform = image_eval_transform(img_size=d.crop_size)
    if fmt.video:
        ds = VideoFramesDataset(
            records,
            frames_per_video=d.frames_per_video if train else 1,
            train=train,
            transform=transform,
            backend=d.backend,
            decode_timeout=d.decode_timeout,
            template=d.template if fmt.frame_folders else None,
            **_common(cfg, split),
        )
    else:
        ds = ImageDataset(records, transform=transform, **_common(cfg, split))
    return ds, records, names


# ------------------------------------------------------------------------------------------------ model
def build_model(cfg: RunCfg, *, num_classes: int | None = None) -> nn.Module:
    """The 3D model of ``cfg.model`` with its initial weights (``cfg.init``) and STS placement."""
    from vidprior.layers.sts import STS_OPTIONS
    from vidprior.models import apply_sts, create_model
    from vidprior.models.weight_sources import load_initial_weights

    m = cfg.model
    model = create_model(m.name, num_classes=num_classes or m.num_classes, dropout=m.dropout, **m.overrides)
    if m.sts:  # STS shares the convs' Parameters: weights load the same before or after
        apply_sts(model, m.sts, **{name: getattr(m, name) for name in STS_OPTIONS})  # the model.<option> keys
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
