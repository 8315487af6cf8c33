"""Faster training-form computations of :class:`vidprior.layers.STSConv3d` for the shapes the paper's models use.

Both give exactly the general path's result (:func:`vidprior.layers.sts_plan.branch_forward`; tests compare them)
and keep the input's memory format (channels_last_3d in, channels_last_3d out, no copy back to NCDHW).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidprior.layers._shift_sum import shift_sum
from vidprior.layers.sts_modes import STATIC_MODE_SPECS, spatial_kernels

# STS layers are typed as their base class nn.Conv3d here: these helpers sit below sts.py in the import graph.
STSLayer = nn.Conv3d


# The dense (3, 1, 1) case at stride 1 runs as one 1x1x1 convolution producing all three taps of every filter,
# followed by adding the tap outputs shifted along T (dynamic), W (horizontal) or H (vertical). One large
# convolution is much faster on CPU than three narrow ones over the same input (benchmarks/sts_layer.py).
def use_shift_path(layer: STSLayer) -> bool:
    spec = STATIC_MODE_SPECS[layer.static_mode]
    return (
        layer.kernel_size[1] == 1
        and layer.groups == 1
        and layer.layout == "zero_pad"
        and spec.temporal == "split"
        and tuple(layer.stride) == (1, 1, 1)
        and layer._pad3 == (1, 0, 0)
    )


def taps_as_filters(w: Tensor) -> Tensor:
    """(C_out, C_in/g, 3, k, k) -> (3*C_out, C_in/g, 1, k, k): filter 3*c + tap is slice ``tap`` of filter c."""
    return w.transpose(1, 2).reshape(3 * w.shape[0], w.shape[1], 1, w.shape[3], w.shape[4])


def centre_tap_bias(b: Tensor) -> Tensor:
    """Bias for :func:`taps_as_filters`: ``b`` on the centre tap, zero on the side taps."""
    zeros = b.new_zeros(b.shape[0])
    return torch.stack([zeros, b, zeros], dim=1).reshape(-1)


def forward_shift(layer: STSLayer, x: Tensor) -> Tensor:
    c_out = layer.out_channels
    d = layer.static_dilation if STATIC_MODE_SPECS[layer.static_mode].temporal_dilated else 1
    w = taps_as_filters(layer.weight)
    bias = None if layer.bias is None else centre_tap_bias(layer.bias)
    z = F.conv3d(x, w, bias)  # (B, 3*C_out, T, H, W) in the input's memory format
    n_h, n_s = layer.num_horizontal, layer.num_static
    # segments (first channel, end channel, axis of y = (B, C, T, H, W), shift)
    segments = ((0, n_h, 4, d), (n_h, n_s, 3, d), (n_s, c_out, 2, 1))
    if x.is_contiguous():
        z = z.unflatten(1, (c_out, 3))  # (B, C_out, 3, T, H, W)
        return shift_sum(z, tap_dim=2, channel_dim=1, segments=segments)
    # channels-last: run the shifted sum on the (B, T, H, W, C_out, 3) view, no layout copies
    zc = z.permute(0, 2, 3, 4, 1).unflatten(-1, (c_out, 3))  # (B, T, H, W, C_out, 3)
    segments_cl = tuple((c0, c1, {2: 1, 3: 2, 4: 3}[axis], dd) for c0, c1, axis, dd in segments)
    y = shift_sum(zc, tap_dim=5, channel_dim=4, segments=segments_cl)  # (B, T, H, W, C_out)
    return y.permute(0, 4, 1, 2, 3)  # (B, C_out, T, H, W), channels_last_3d strides


# Depthwise (3, k, k) convs (CSN, X3D) run as 2D depthwise convolutions over the frames, in channels-last layout:
# PyTorch's 2D depthwise kernels are much faster on CPU than its 3D ones. The dynamic filters become a
# channel-multiplier-3 depthwise conv (one output per temporal tap) followed by the shifted sum along T.
def use_frames_path(layer: STSLayer) -> bool:
    k = layer.kernel_size[1]
    return (
        k > 1
        and layer.groups == layer.in_channels == layer.out_channels
        and layer.layout == "zero_pad"
        and layer.stride[0] == 1
        and layer._pad3 == (1, (k - 1) // 2, (k - 1) // 2)
    )


def forward_depthwise_frames(layer: STSLayer, x: Tensor) -> Tensor:
    b, ch, t, h, w = x.shape
    n, k, s = layer.num_static, layer.kernel_size[1], (layer.stride[1], layer.stride[2])
    c = (k - 1) // 2
    ho, wo = (h - 1) // s[0] + 1, (w - 1) // s[1] + 1
    wt, bias = layer.weight, layer.bias
    parts = []
    m = ch - n
    # (B, C, T, H, W) -> (B, T, H, W, C) split into the static and dynamic channels, each made contiguous
    # (one pass over the input; torch.split, unlike slicing, does not zero-fill a full-size gradient per part)
    xs, xd = torch.split(x.permute(0, 2, 3, 4, 1), [n, m], dim=-1)

    def frames(part: Tensor) -> Tensor:  # (B, T, H, W, m) -> (B*T, m, H, W) with channels-last strides
        return part.contiguous().view(b * t, h, w, part.shape[-1]).permute(0, 3, 1, 2)

    if n > 0:
        fs = frames(xs)
        ys = None
        kernels = spatial_kernels(STATIC_MODE_SPECS[layer.static_mode], wt[:n], layer.static_dilation)
        for i, fk in enumerate(kernels):
            bi = None if (bias is None or i) else bias[:n]
            y = F.conv2d(fs, fk.weight, bi, s, fk.reach, fk.dilation, n)
            ys = y if ys is None else ys + y
        assert ys is not None
        parts.append(ys.permute(0, 2, 3, 1).reshape(b, t, ho, wo, n))  # (B*T, n, H', W') -> (B, T, H', W', n)
    if m > 0:
        fd = frames(xd)
        wd = wt[n:].reshape(3 * m, 1, k, k)  # (m, 1, 3, k, k) -> filter 3*c + tap = slice tap of filter c
        bd = None if bias is None else centre_tap_bias(bias[n:])
        z = F.conv2d(fd, wd, bd, s, c, 1, m)  # (B*T, 3m, H', W'), channels-last
        z = z.permute(0, 2, 3, 1).reshape(b, t, ho, wo, m, 3)  # (B, T, H', W', m, 3)
        parts.append(shift_sum(z, tap_dim=5, channel_dim=4, segments=((0, m, 1, 1),)))  # (B, T, H', W', m)
    y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # (B, T, H', W', C)
    y = y.permute(0, 4, 1, 2, 3)  # (B, C, T, H', W'), channels_last_3d strides
    return y.contiguous() if x.is_contiguous() else y
