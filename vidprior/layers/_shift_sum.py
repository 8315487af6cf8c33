"""Sum of the three tap outputs of a temporal kernel, each shifted along its own axis.

Used by :class:`vidprior.layers.STSConv3d` for dense ``(3, 1, 1)`` kernels: a 1x1x1 convolution computes every tap
of every filter at once, ``z[..., tap, c]``, and this op forms

    y[..., i, c] = z[..., i - d, 0, c] + z[..., i, 1, c] + z[..., i + d, 2, c]

along the axis and spacing ``d`` chosen for channel ``c`` (zero outside the tensor: the convolution's zero padding).
Written by hand (an autograd Function) because expressing it with in-place slice additions makes autograd keep
extra copies; here forward and backward each touch every element once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# (first channel, end channel, axis of y, shift)
Segment = tuple[int, int, int, int]


def _sl(dim: int, start: int | None, stop: int | None, ndim: int) -> tuple[slice, ...]:
    idx = [slice(None)] * ndim
    idx[dim] = slice(start, stop)
    return tuple(idx)


class _ShiftSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, segments: Sequence[Segment]) -> Tensor:  # type: ignore[override]
        # z: (..., 3, C) -> y: (..., C)
        ctx.segments = segments
        y = z[..., 1, :].clone()
        nd = y.dim()
        for c0, c1, axis, d in segments:
            if c1 <= c0:
                continue
            n = y.shape[axis]
            if n <= d:
                continue
            ch = slice(c0, c1)
            # tap 0 reads d positions back, tap 2 reads d positions ahead
            y[(*_sl(axis, d, None, nd)[:-1], ch)] += z[(*_sl(axis, None, n - d, nd)[:-1], 0, ch)]
            y[(*_sl(axis, None, n - d, nd)[:-1], ch)] += z[(*_sl(axis, d, None, nd)[:-1], 2, ch)]
        return y

    @staticmethod
    def backward(ctx, gy: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        nd = gy.dim()
        gz = gy.new_empty((*gy.shape[:-1], 3, gy.shape[-1]))
        gz[..., 1, :] = gy
        covered = torch.zeros(gy.shape[-1], dtype=torch.bool)
        for c0, c1, _, _ in ctx.segments:
            covered[c0:c1] = True
        if not bool(covered.all()):  # channels outside every segment have only the centre tap
            gz[..., 0, ~covered] = 0
            gz[..., 2, ~covered] = 0
        for c0, c1, axis, d in ctx.segments:
            if c1 <= c0:
                continue
            n = gy.shape[axis]
            ch = slice(c0, c1)
            dd = min(d, n)
            gz[(*_sl(axis, None, n - dd, nd)[:-1], 0, ch)] = gy[(*_sl(axis, dd, None, nd)[:-1], ch)]
            gz[(*_sl(axis, n - dd, None, nd)[:-1], 0, ch)] = 0
            gz[(*_sl(axis, dd, None, nd)[:-1], 2, ch)] = gy[(*_sl(axis, None, n - dd, nd)[:-1], ch)]
            gz[(*_sl(axis, None, dd, nd)[:-1], 2, ch)] = 0
        return gz, None


def shift_sum(z: Tensor, segments: Sequence[Segment]) -> Tensor:
    """``z`` of shape ``(..., 3, C)`` -> ``(..., C)``; see the module docstring. Channels outside every segment
    get only the centre tap."""
    return _ShiftSum.apply(z, tuple(segments))
