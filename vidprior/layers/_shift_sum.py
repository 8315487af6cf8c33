"""Sum of the three tap outputs of a temporal-size-3 kernel, each shifted along its own axis.

Used by :class:`vidprior.layers.STSConv3d`: one convolution computes the output of every tap of every filter at
once, ``z[..., c, tap, ...]``, and this op forms

    y[..., c, ..., i, ...] = z[..., c, 0, ..., i - d, ...] + z[..., c, 1, ..., i, ...] + z[..., c, 2, ..., i + d, ...]

with the axis ``i`` and spacing ``d`` chosen per channel range (zero outside the tensor: the convolution's zero
padding). Written by hand as an autograd Function: with in-place slice additions autograd would keep extra copies;
here forward and backward each touch every element once, and no layout copies are made.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# (first channel, end channel, axis of y, shift)
Segment = tuple[int, int, int, int]


class _ShiftSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, tap_dim: int, channel_dim: int, segments: Sequence[Segment]) -> Tensor:  # type: ignore[override]
        ctx.tap_dim, ctx.channel_dim, ctx.segments = tap_dim, channel_dim, segments
        y = z.select(tap_dim, 1).contiguous()
        for c0, c1, axis, d in segments:
            n = y.shape[axis]
            if c1 <= c0 or n <= d:
                continue
            # tap 0 reads d positions back, tap 2 reads d positions ahead
            y[_idx(y.dim(), channel_dim, c0, c1, axis, d, None)] += z[
                _idx(y.dim(), channel_dim, c0, c1, axis, None, n - d, tap=(tap_dim, 0))
            ]
            y[_idx(y.dim(), channel_dim, c0, c1, axis, None, n - d)] += z[
                _idx(y.dim(), channel_dim, c0, c1, axis, d, None, tap=(tap_dim, 2))
            ]
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        tap_dim, channel_dim = ctx.tap_dim, ctx.channel_dim
        nd = gy.dim()
        gz = gy.new_empty((*gy.shape[:tap_dim], 3, *gy.shape[tap_dim:]))
        gz.select(tap_dim, 1).copy_(gy)
        covered = [False] * gy.shape[channel_dim]
        for c0, c1, axis, d in ctx.segments:
            n = gy.shape[axis]
            if c1 <= c0:
                continue
            covered[c0:c1] = [True] * (c1 - c0)
            d = min(d, n)
            # tap 0 at position j fed y at j + d; tap 2 at j fed y at j - d; positions that fed nothing get 0
            gz[_idx(nd, channel_dim, c0, c1, axis, None, n - d, tap=(tap_dim, 0))] = gy[
                _idx(nd, channel_dim, c0, c1, axis, d, None)
            ]
            gz[_idx(nd, channel_dim, c0, c1, axis, n - d, None, tap=(tap_dim, 0))] = 0
            gz[_idx(nd, channel_dim, c0, c1, axis, d, None, tap=(tap_dim, 2))] = gy[
                _idx(nd, channel_dim, c0, c1, axis, None, n - d)
            ]
            gz[_idx(nd, channel_dim, c0, c1, axis, None, d, tap=(tap_dim, 2))] = 0
        if not all(covered):  # channels outside every segment have only the centre tap
            rest = torch.tensor([not c for c in covered], device=gy.device)
            for tap in (0, 2):
                side = gz.select(tap_dim, tap)
                side.index_fill_(channel_dim, rest.nonzero().flatten(), 0)
        return gz, None, None, None


def _idx(nd: int, channel_dim: int, c0: int, c1: int, axis: int, start, stop, tap: tuple[int, int] | None = None):
    """Index of y (``nd`` dims) restricted to channels ``[c0, c1)`` and ``start:stop`` along ``axis``; with ``tap``
    the same index into z, whose extra tap dimension sits at ``tap[0]``."""
    idx: list = [slice(None)] * nd
    idx[channel_dim] = slice(c0, c1)
    idx[axis] = slice(start, stop)
    if tap is not None:
        idx.insert(tap[0], tap[1])
    return tuple(idx)


def shift_sum(z: Tensor, *, tap_dim: int, channel_dim: int, segments: Sequence[Segment]) -> Tensor:
    """Sum the three taps of ``z`` (size 3 at ``tap_dim``) shifted per channel segment; see the module docstring.

    ``channel_dim`` and each segment's axis index the *output* (``z`` without its tap dimension). Channels outside
    every segment get only the centre tap.
    """
    return _ShiftSum.apply(z, tap_dim, channel_dim, tuple(segments))
