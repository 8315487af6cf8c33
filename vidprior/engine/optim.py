"""Optimizer and learning-rate schedule from the configuration, on timm's pieces.

* SGD with momentum (not Nesterov), weight decay optionally off for norms and biases (X3D-K400's setting), LAMB
  (the authors' A2 image recipe) or AdamW, built with ``timm.optim.create_optimizer_v2``. Only parameters with
  ``requires_grad`` are optimised (``train.trainable`` freezes the others: no update, no weight decay, no state).
* The learning rate is given for ``base_batch_size`` and scaled linearly to the real global batch (the paper:
  "lr 0.4 at batch 1024").
* Cosine decay to ``min_lr`` with a linear warm-up from ``warmup_lr``, stepped every iteration
  (``timm.scheduler.CosineLRScheduler`` with ``t_in_epochs=False``), like mmcv's per-iteration warm-up.
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from vidprior.engine.config import OptimCfg
from vidprior.errors import VidpriorError


def scaled_lr(cfg: OptimCfg, global_batch: int) -> float:
    if cfg.base_batch_size:
        return cfg.lr * global_batch / cfg.base_batch_size
    return cfg.lr


def build_optimizer(model: torch.nn.Module, cfg: OptimCfg, global_batch: int) -> torch.optim.Optimizer:
    if not any(p.requires_grad for p in model.parameters()):
        raise VidpriorError("the model has no trainable parameter (see train.trainable)")
    lr = scaled_lr(cfg, global_batch)
    opt = {"sgd": "momentum", "lamb": "lamb", "adamw": "adamw"}[cfg.name]
    kwargs = {"momentum": cfg.momentum} if cfg.name == "sgd" else {}
    return create_optimizer_v2(
        model,  # timm's parameter groups leave out parameters without requires_grad (and empty groups)
        opt=opt,
        lr=lr,
        weight_decay=cfg.weight_decay,
        filter_bias_and_bn=cfg.no_weight_decay_on_norm_and_bias,
        **kwargs,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimCfg, steps_per_epoch: int) -> CosineLRScheduler:
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return CosineLRScheduler(
        optimizer,
        t_initial=total,
        lr_min=cfg.min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.warmup_lr,
        warmup_prefix=False,
        t_in_epochs=False,
    )


def schedule_metadata(cfg: OptimCfg, global_batch: int, steps_per_epoch: int, steps: int) -> dict[str, str]:
    """The schedule of the optimizer steps taken so far, for the metadata of saved weights (read back by
    ``init.side_taps_scale=auto``, :mod:`vidprior.models.side_taps`)."""
    import json

    from vidprior.models.side_taps import SCHEDULE_KEY

    schedule = {
        "optimizer": cfg.name,
        "lr": scaled_lr(cfg, global_batch),
        "weight_decay": cfg.weight_decay,
        "momentum": cfg.momentum if cfg.name == "sgd" else 0.0,
        "total_steps": max(1, cfg.epochs * steps_per_epoch),
        "warmup_steps": round(cfg.warmup_epochs * steps_per_epoch),
        "warmup_lr": cfg.warmup_lr,
        "min_lr": cfg.min_lr,
        "steps": steps,
    }
    return {SCHEDULE_KEY: json.dumps(schedule)}
