"""Parameter and multiply-add accounting.

Counts with ``torch.utils.flop_counter.FlopCounterMode`` (no extra dependency) and reports **multiply-adds**: one
fused multiply-add counts once, as the paper's tables, fvcore and PySlowFast do (FlopCounterMode counts two FLOPs
per multiply-add; we halve its convolution and matmul counts). Normalisation layers count 2 per output element,
fvcore's convention for an affine batch norm in eval mode (the totals of the authors' model zoo,
docs/model_zoo.md), so that ``macs`` matches mmaction2-style totals and ``macs_by_op["conv"] +
macs_by_op["linear"]`` matches PySlowFast's.

By default the forward runs on the **meta device** (no memory, no arithmetic), so full-size models count in
seconds: the model's parameters and buffers are swapped for meta tensors with ``torch.func.functional_call``;
the model itself is not modified. STS layers run their real forward there and are counted op by op.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vidprior.errors import VidpriorError

aten = torch.ops.aten

_CONV_OPS = {"convolution", "_convolution", "convolution_backward", "cudnn_convolution", "mkldnn_convolution"}
_LINEAR_OPS = {"mm", "addmm", "bmm", "baddbmm", "matmul"}


def _norm_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    # 2 multiply-adds per element (scale and shift), reported as FLOPs = 2 x MACs like every other op here.
    return 4 * math.prod(x_shape)


_NORM_OPS = [
    getattr(aten, name)
    for name in (
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
        "cudnn_batch_norm",
        "miopen_batch_norm",
        "native_group_norm",
        "native_layer_norm",
    )
    if hasattr(aten, name)
]


@dataclass(frozen=True)
class Profile:
    """Result of :func:`profile`: parameters and multiply-adds for one forward pass of ``input_shape``."""

    params: int
    macs: int
    macs_by_op: dict[str, int] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v / 1e9:.3f}G" for k, v in sorted(self.macs_by_op.items()))
        return f"{self.mparams:.2f}M params, {self.gmacs:.3f} GMACs at {tuple(self.input_shape)} ({parts})"


def count_params(model: nn.Module) -> int:
    """Number of distinct parameter elements (shared parameters count once)."""
    return sum(p.numel() for p in model.parameters())


def profile(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    count_norm: bool = True,
    device: str | torch.device | None = "meta",
) -> Profile:
    """Parameters and multiply-adds of ``model`` for one input of ``input_shape`` (including the batch dim).

    Args:
        model: any module taking one tensor. It is counted in eval mode (its mode is restored afterwards).
        input_shape: e.g. ``(1, 3, 8, 256, 256)``.
        count_norm: count normalisation layers (2 per element) in ``macs``.
        device: where the counting forward runs; ``"meta"`` (default) needs no memory. ``None`` runs on the
            model's own device with its real weights.
    """
    if not input_shape or not all(isinstance(s, int) and s > 0 for s in input_shape):
        raise VidpriorError(
            f"input_shape={tuple(input_shape)!r}: expected positive integers such as (1, 3, 8, 224, 224)"
        )
    params = count_params(model)
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    mapping = {op: _norm_flops for op in _NORM_OPS} if count_norm else {}
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with torch.no_grad():
            if device is None:
                dev = first.device if first is not None else torch.device("cpu")
                x = torch.zeros(tuple(input_shape), device=dev, dtype=dtype)
                with counter:
                    model(x)
            else:
                dev = torch.device(device)
                # one stand-in per distinct tensor, so that shared (tied) parameters stay shared
                stand_in: dict[int, torch.Tensor] = {}
                tensors = {}
                named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
                for k, v in named:
                    if id(v) not in stand_in:
                        stand_in[id(v)] = torch.empty_like(v, device=dev)
                    tensors[k] = stand_in[id(v)]
                x = torch.empty(tuple(input_shape), device=dev, dtype=dtype)
                with counter:
                    torch.func.functional_call(model, tensors, (x,), tie_weights=True, strict=False)
    finally:
        model.train(was_training)
    by_op: dict[str, int] = {}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(op).split(".")[-1]  # keys are op packets such as aten.convolution
        if name in _CONV_OPS:
            kind = "conv"
        elif name in _LINEAR_OPS:
            kind = "linear"
        elif op in _NORM_OPS:
            kind = "norm"
        else:
            kind = "other"
        by_op[kind] = by_op.get(kind, 0) + flops // 2
    return Profile(params=params, macs=sum(by_op.values()), macs_by_op=by_op, input_shape=tuple(input_shape))
