"""How the side taps of inflated 3D kernels start fine-tuning: ``zero`` (the paper's zero-init) or ``random``.

``random`` adds to the side slices of every inflated kernel the video model's own initialisation of those slices,
scaled by a factor: a number, or ``"auto"``, the shrink that the image checkpoint's optimizer applied over its
recorded schedule to a weight that received no gradient (what happens to the side taps of a 3D network
pre-trained on one-frame clips, as the authors ran it). The derivation for SGD, AdamW and LAMB is in
``docs/image_pretraining_sts.md``.

The schedule is read from the safetensors metadata key :data:`SCHEDULE_KEY` (written by ``vidprior pretrain``):
``optimizer`` (``sgd``, ``adamw``, ``lamb``), ``lr`` (peak, after batch scaling), ``weight_decay``, ``momentum``,
``total_steps``, ``warmup_steps``, ``warmup_lr``, ``min_lr`` (cosine decay with linear warm-up, stepped per
iteration) and ``steps`` (optimizer steps taken).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vidprior.errors import VidpriorError

SIDE_TAPS: tuple[str, ...] = ("zero", "random")
SCHEDULE_KEY = "vidprior.schedule"
_SCHEDULE_FIELDS = ("optimizer", "lr", "weight_decay", "total_steps", "warmup_steps", "warmup_lr", "min_lr", "steps")


def read_schedule(path: str | Path) -> dict[str, Any] | None:
    """The optimizer schedule recorded in a ``.safetensors`` file's metadata, or ``None`` if it has none."""
    if Path(path).suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if SCHEDULE_KEY not in meta:
        return None
    return json.loads(meta[SCHEDULE_KEY])


def learning_rates(schedule: Mapping[str, Any]) -> list[float]:
    """The learning rate of every step taken: linear warm-up from ``warmup_lr``, then cosine decay to ``min_lr``
    over ``total_steps`` (the schedule ``vidprior.engine.optim.build_scheduler`` builds, replayed with timm)."""
    from timm.scheduler import CosineLRScheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=float(schedule["lr"]))
    sched = CosineLRScheduler(
        opt,
        t_initial=max(1, int(schedule["total_steps"])),
        lr_min=float(schedule["min_lr"]),
        warmup_t=int(schedule["warmup_steps"]),
        warmup_lr_init=float(schedule["warmup_lr"]),
        warmup_prefix=False,
        t_in_epochs=False,
    )
    out = []
    for t in range(int(schedule["steps"])):
        out.append(float(opt.param_groups[0]["lr"]))
        sched.step_update(t + 1)
    return out


def weight_decay_shrink(schedule: Mapping[str, Any]) -> float:
    """The factor by which ``schedule`` multiplies a weight whose gradient is always zero.

    SGD with momentum ``m`` (L2 decay in the momentum buffer): ``b_t = m b_{t-1} + wd w_{t-1}``,
    ``w_t = w_{t-1} - lr_t b_t``, run for ``w_0 = 1``. AdamW: ``prod(1 - lr_t wd)``. LAMB: the trust ratio of a
    zero-gradient tensor makes its step ``lr_t w``: ``prod(1 - lr_t)`` (1 without weight decay).
    """
    missing = [k for k in _SCHEDULE_FIELDS if k not in schedule]
    if missing:
        raise VidpriorError(f"recorded schedule lacks {missing}: {dict(schedule)}")
    name, wd = schedule["optimizer"], float(schedule["weight_decay"])
    lrs = learning_rates(schedule)
    if name == "sgd":
        m, w, buf = float(schedule.get("momentum", 0.0)), 1.0, None
        for lr in lrs:
            d = wd * w
            buf = d if buf is None else m * buf + d
            w -= lr * buf
        return w
    if name == "adamw":
        return math.prod(1.0 - lr * wd for lr in lrs)
    if name == "lamb":
        return math.prod(1.0 - lr for lr in lrs) if wd != 0 else 1.0
    raise VidpriorError(f"recorded optimizer {name!r}: no weight-decay shrink known (sgd, adamw, lamb)")


def resolve_scale(scale: float | str, path: str | Path) -> float:
    """``init.side_taps_scale``: a number as is; ``"auto"`` from the schedule recorded in ``path``."""
    if isinstance(scale, str):
        if scale != "auto":
            raise VidpriorError(f"init.side_taps_scale={scale!r}: expected a number >= 0 or 'auto'")
        schedule = read_schedule(path)
        if schedule is None:
            raise VidpriorError(
                f"init.side_taps_scale=auto: {path} records no optimizer schedule (safetensors metadata "
                f"{SCHEDULE_KEY!r}, written by `vidprior pretrain`); give the factor as a number"
            )
        return weight_decay_shrink(schedule)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0 or math.isinf(scale):
        raise VidpriorError(f"init.side_taps_scale={scale!r}: expected a finite number >= 0 or 'auto'")
    return float(scale)


def add_side_taps(weight: Tensor, own_init: Tensor, scale: float, *, first_row: int = 0) -> Tensor:
    """``weight`` (C_out, C_in/g, kt, kh, kw) plus ``scale`` times ``own_init``'s non-centre slices, for the filters
    from ``first_row`` on (an STS image kernel's static filters before it keep what they learned)."""
    out = weight.clone()
    centre = weight.shape[2] // 2
    sides = [t for t in range(weight.shape[2]) if t != centre]
    out[first_row:, :, sides] += scale * own_init[first_row:, :, sides].to(out.dtype)
    return out
