"""Frozen parameters and BatchNorm statistics.

``train.trainable`` (e.g. the linear probe of paper Table 1): only parameters matching the patterns get gradients
and enter the optimizer (and DDP's reducer); the largest sub-modules without a trainable parameter run in eval mode
throughout training (:func:`frozen_modules`), so their BatchNorm statistics do not drift, and precise BN
(:func:`recompute_bn_stats`) leaves them alone. Checkpoints and EMA still hold the whole model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch
from torch import nn

from vidprior.errors import ConfigError


def set_train_mode(model: nn.Module, *, norm_eval: bool, frozen: bool) -> None:
    """Training mode, except every BatchNorm with ``norm_eval`` and, with ``frozen``, the frozen sub-modules."""
    model.train()
    if norm_eval:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    if frozen:
        for m in frozen_modules(model):
            m.eval()


def freeze_parameters(model: nn.Module, patterns: list[str] | None) -> list[str]:
    """``train.trainable``: parameters whose names match one of the fnmatch ``patterns`` keep ``requires_grad``,
    all others are frozen. Returns the trainable names (all of them for ``patterns=None``). A pattern that matches
    no parameter is a :class:`~vidprior.engine.config.ConfigError` naming it and some real names."""
    named = list(model.named_parameters())
    if patterns is None:
        return [n for n, p in named if p.requires_grad]
    names = [n for n, _ in named]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            examples = ", ".join(names[:3] + names[-2:]) if len(names) > 5 else ", ".join(names)
            raise ConfigError(
                f"train.trainable: pattern {pattern!r} matches no parameter of the model; its parameters are "
                f"named like {examples}"
            )
    trainable = []
    for name, p in named:
        p.requires_grad_(any(fnmatch.fnmatchcase(name, pat) for pat in patterns))
        if p.requires_grad:
            trainable.append(name)
    return trainable


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The largest sub-modules whose parameters are all frozen (and that hold parameters or buffers): the trainer
    keeps them in eval mode, so frozen BatchNorm statistics do not drift and frozen dropout / drop-path is off.
    Parameter-free modules inside a trainable one (a head's dropout) are not among them."""
    out: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        params = list(m.parameters())
        if any(p.requires_grad for p in params):
            for child in m.children():
                visit(child)
        elif params or any(True for _ in m.buffers()):
            out.append(m)

    visit(model)
    return out


def recompute_bn_stats(
    model: nn.Module, batches, device: torch.device, forward: Callable, *, train_mode: Callable | None = None
) -> None:
    """Precise BN: replace running statistics by their exact average over ``batches`` (train-mode forward).

    ``train_mode``: puts the model in its training mode (default ``model.train()``); only the BatchNorms it leaves
    in training mode are recomputed (frozen ones, in eval mode, keep their statistics)."""
    was = model.training
    train_mode = train_mode or model.train
    train_mode()
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training
    ]
    if not bns:
        _restore_mode(model, was, train_mode)
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    with torch.no_grad():
        for batch in batches:
            forward(batch)
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    _restore_mode(model, was, train_mode)


def _restore_mode(model: nn.Module, was_training: bool, train_mode: Callable) -> None:
    if was_training:
        train_mode()
    else:
        model.eval()


__all__ = ["freeze_parameters", "frozen_modules", "recompute_bn_stats", "set_train_mode"]
