"""The per-layer computation of an STS convolution, read from the static-mode table (:mod:`sts_modes`).

A layer's output is a list of *parts* concatenated along channels: the static parts (per-frame 2D convolutions,
each a sum of :class:`FrameKernel` s) and the dynamic part (the ordinary 3D convolution of its filters). The
training form (:class:`vidprior.layers.STSConv3d`) and the inference form (:mod:`vidprior.layers.fuse`) both run
this plan; the inference form may merge a part's kernels into one (:func:`sts_modes.embed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidprior.layers.sts_modes import STATIC_MODE_SPECS, FrameKernel, spatial_kernels, temporal_kernels

# STS layers are typed as their base class nn.Conv3d here: these helpers sit below sts.py in the import graph.
STSLayer = nn.Conv3d


@dataclass(frozen=True)
class StaticPart:
    """Static filters ``[f0, f1)`` of the layer reading input channels ``[i0, i1)`` in ``groups`` groups; their
    output is the sum of ``kernels`` applied per frame (the first carries the bias)."""

    filters: tuple[int, int]
    inputs: tuple[int, int]
    groups: int
    kernels: list[FrameKernel]


def static_parts(layer: STSLayer, w: Tensor) -> list[StaticPart]:
    """The static parts of ``layer`` for weight ``w`` (views of ``w``: gradients flow back to it)."""
    spec = STATIC_MODE_SPECS[layer.static_mode]
    n, grouped = layer.num_static, layer.groups > 1
    cpg = layer.in_channels // layer.groups
    c_static = layer.static_groups * cpg if grouped else layer.in_channels
    g_static = layer.static_groups if grouped else 1
    ws = w[:n]  # (n, C_in/g, 3, k, k)
    if layer.kernel_size[1] > 1:
        return [StaticPart((0, n), (0, c_static), g_static, spatial_kernels(spec, ws, layer.static_dilation))]
    kernels = temporal_kernels(spec, ws, layer.num_horizontal, layer.static_dilation)
    if len(kernels) == 1:  # centre tap only
        return [StaticPart((0, n), (0, c_static), g_static, kernels)]
    nh = layer.num_horizontal
    if grouped:
        split, gh = layer.horizontal_groups * cpg, layer.horizontal_groups
        halves = [((0, split), gh), ((split, c_static), layer.static_groups - gh)]
    else:
        halves = [((0, c_static), 1), ((0, c_static), 1)]
    ranges = [(0, nh), (nh, n)]
    return [
        StaticPart(r, inputs, g, [fk])
        for r, (inputs, g), fk in zip(ranges, halves, kernels)
        if r[1] > r[0]  # with one static group (2 groups in all) the static filters are all horizontal
    ]


def dynamic_inputs(layer: STSLayer) -> tuple[tuple[int, int], int]:
    """Input channel range and group count of the dynamic filters ``[num_static, C_out)``."""
    if layer.groups == 1:
        return (0, layer.in_channels), 1
    cpg = layer.in_channels // layer.groups
    return (layer.static_groups * cpg, layer.in_channels), layer.groups - layer.static_groups


def frame_conv(layer: STSLayer, x: Tensor, fk: FrameKernel, bias: Tensor | None, groups: int) -> Tensor:
    """Per-frame 2D convolution aligned with the 3D conv's output grid (zero padding).

    The centre tap of the 3D kernel reads frame ``t * st - pt + 1``: temporal kernel 1 with padding ``pt - 1`` and
    the layer's temporal stride. Spatially the kernel is centred where the ``k x k`` centre slice is: padding
    ``p - c + reach``. Negative paddings (the layer pads less than "same") become crops.
    """
    pt, ph, pw = layer._pad3
    c = (layer.kernel_size[1] - 1) // 2
    pads = (pt - 1, ph - c + fk.reach[0], pw - c + fk.reach[1])
    crop = [max(-p, 0) for p in pads]
    if any(crop):
        t, h, wd = x.shape[2:]
        x = x[:, :, crop[0] : t - crop[0], crop[1] : h - crop[1], crop[2] : wd - crop[2]]
    w = fk.weight.unsqueeze(2)  # (n, C/g, kh, kw) -> (n, C/g, 1, kh, kw)
    return F.conv3d(x, w, bias, layer.stride, tuple(max(p, 0) for p in pads), (1, *fk.dilation), groups)


def flat_conv(layer: STSLayer, x: Tensor, fk: FrameKernel, bias: Tensor | None, groups: int) -> Tensor:
    """The authors' row (column) convolution: each frame flattened to one sequence in (h w) ((w h)) order.

    ``fk`` is ``1 x L`` (row) or ``L x 1`` (column); spatial stride ``s`` becomes stride ``s * s`` on the sequence
    and the result is read back as an ``(H/s, W/s)`` frame (docs/method.md: wrap-around at row ends and the
    stride-2 scrambling included).
    """
    st, s = layer.stride[0], layer.stride[1]
    w = fk.weight
    n, cin = w.shape[0], w.shape[1]
    transpose = w.shape[2] > 1
    taps = w.shape[2] * w.shape[3]
    x = x[:, :, ::st]  # "same" temporal padding: output t is centred on frame t * st
    b, _, t, h, wd = x.shape
    if transpose:
        x = x.transpose(3, 4)  # (B, C, T, W, H): the sequence runs down the columns
    seq = x.reshape(b, cin * groups, t, h * wd)  # (B, C, T, H*W)
    y = F.conv2d(seq, w.reshape(n, cin, 1, taps), bias, (1, s * s), (0, (taps - 1) // 2), 1, groups)
    ho, wo = (h - 1) // s + 1, (wd - 1) // s + 1
    if transpose:
        return y.view(b, n, t, wo, ho).transpose(3, 4)  # (B, n, T, W', H') -> (B, n, T, H', W')
    return y.view(b, n, t, ho, wo)


def run_part(layer: STSLayer, x: Tensor, part: StaticPart, bias: Tensor | None) -> Tensor:
    """Output of one static part: the sum of its per-frame kernels (``x`` is the layer's whole input)."""
    i0, i1 = part.inputs
    xp = x if (i0, i1) == (0, x.shape[1]) else x[:, i0:i1]
    b = None if bias is None else bias[part.filters[0] : part.filters[1]]
    out = None
    for fk in part.kernels:
        flat = layer.layout == "official" and (fk.weight.shape[2] == 1) != (fk.weight.shape[3] == 1)
        y = (flat_conv if flat else frame_conv)(layer, xp, fk, b, part.groups)
        out = y if out is None else out + y
        b = None
    assert out is not None
    return out


def branch_forward(layer: STSLayer, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """The general path: every static part, then the dynamic Conv3d, concatenated along channels."""
    outs = [run_part(layer, x, part, b) for part in static_parts(layer, w)]
    n = layer.num_static
    if n < layer.out_channels:
        (i0, i1), g = dynamic_inputs(layer)
        xd = x if i0 == 0 else x[:, i0:i1]
        outs.append(F.conv3d(xd, w[n:], None if b is None else b[n:], layer.stride, layer._pad3, 1, g))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
