"""The inference form of STS: fixed kernels, plain convolutions only (exportable), same output as training.

STS is linear and its weights are fixed at inference, so every static part's kernels can be prepared once:

* the dynamic filters stay one ``Conv3d`` (a slice of the weight, made contiguous);
* each static part's per-frame kernels are merged into ONE dense 2D kernel (:func:`sts_modes.embed`) when that
  costs no more multiply-adds than running them apart, or when the layer is depthwise (memory bound: one pass over
  the input beats three); otherwise they stay separate and are summed;
* depthwise layers on channels_last_3d inputs run as a full-channel depthwise ``Conv3d`` (static filters keep only
  their centre slice) plus full-channel per-frame side kernels (zeros on the dynamic channels), added in place:
  no channel slicing of the input and no concatenation, which on channels-last costs more than the extra taps.

The rule was chosen by measuring these forms on the paper's layer shapes (docs/performance/).
:func:`fuse_sts` swaps every :class:`STSConv3d` of a model for a :class:`FusedSTSConv3d` (sharing the weight and
bias Parameters, so the state dict is unchanged); an :class:`STSConv3d` in ``eval()`` mode also uses a cached
inference form by itself when no weight gradient is needed (rebuilt when its weights change or after ``train()``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidprior.layers.sts_modes import FrameKernel, embed
from vidprior.layers.sts_plan import branch_forward, dynamic_inputs, frame_conv, static_parts

# STS layers are typed as their base class nn.Conv3d here: these helpers sit below sts.py in the import graph.
STSLayer = nn.Conv3d


@dataclass
class _Part:
    inputs: tuple[int, int]
    groups: int
    kernels: list[FrameKernel]
    bias: Tensor | None


@dataclass
class FusedForm:
    """Prepared kernels of one layer (detached from autograd). See the module docstring for the rule."""

    parts: list[_Part]
    dynamic: tuple[tuple[int, int], int, Tensor, Tensor | None] | None  # inputs, groups, weight, bias
    dw_centre: Tensor | None = None  # depthwise: the whole weight with the static filters' side slices zeroed
    dw_sides: list[FrameKernel] | None = None  # depthwise: full-channel side kernels, zero on dynamic channels
    bias: Tensor | None = None
    official: bool = False
    weight: Tensor | None = None  # layout="official": the weight, run through the general path


def _taps(fk: FrameKernel) -> int:
    return fk.weight.shape[-2] * fk.weight.shape[-1]


def _merge_same_grid(kernels: list[FrameKernel]) -> list[FrameKernel]:
    """Add kernels of the same shape and dilation (the two dilated side slices land on the same taps)."""
    out: dict[tuple, FrameKernel] = {}
    for fk in kernels:
        key = (tuple(fk.weight.shape), fk.dilation)
        out[key] = FrameKernel(out[key].weight + fk.weight, fk.dilation, fk.reach) if key in out else fk
    return list(out.values())


def build_form(layer: STSLayer) -> FusedForm:
    """The inference form of ``layer`` for its current weights."""
    with torch.no_grad():
        w = layer.weight.detach()
        b = None if layer.bias is None else layer.bias.detach().contiguous()
        if layer.layout == "official":
            return FusedForm([], None, bias=b, official=True, weight=w.contiguous())
        depthwise = layer.groups == layer.in_channels == layer.out_channels
        parts = []
        for part in static_parts(layer, w):
            kernels = _merge_same_grid(part.kernels)
            merged = embed(kernels)
            if depthwise or _taps(merged) <= sum(_taps(fk) for fk in kernels):
                kernels = [merged]
            kernels = [FrameKernel(fk.weight.contiguous(), fk.dilation, fk.reach) for fk in kernels]
            pb = None if b is None else b[part.filters[0] : part.filters[1]].contiguous()
            parts.append(_Part(part.inputs, part.groups, kernels, pb))
        n = layer.num_static
        dynamic = None
        if n < layer.out_channels:
            inputs, g = dynamic_inputs(layer)
            dynamic = (inputs, g, w[n:].contiguous(), None if b is None else b[n:].contiguous())
        form = FusedForm(parts, dynamic, bias=b)
        if depthwise and layer.kernel_size[1] > 1:
            centre = w.clone()  # (C, 1, 3, k, k)
            centre[:n, :, 0] = 0
            centre[:n, :, 2] = 0
            sides = []
            (part,) = static_parts(layer, w)
            for fk in _merge_same_grid(part.kernels[1:]):
                full = fk.weight.new_zeros(layer.out_channels, *fk.weight.shape[1:])
                full[:n] = fk.weight
                sides.append(FrameKernel(full, fk.dilation, fk.reach))
            form.dw_centre, form.dw_sides = centre, sides
        return form


def run_form(layer: nn.Module, x: Tensor, form: FusedForm) -> Tensor:
    """Output of the inference form (``layer`` supplies stride, padding and kernel size)."""
    if form.official:
        assert form.weight is not None
        return branch_forward(layer, x, form.weight, form.bias)  # type: ignore[arg-type]
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d)
    if form.dw_centre is not None and form.dw_sides is not None and channels_last:
        g = layer.in_channels
        y = F.conv3d(x, form.dw_centre, form.bias, layer.stride, layer._pad3, 1, g)
        for fk in form.dw_sides:
            y += frame_conv(layer, x, fk, None, g)  # type: ignore[arg-type]
        return y.contiguous(memory_format=torch.channels_last_3d)
    outs = []
    for part in form.parts:
        i0, i1 = part.inputs
        xp = x if (i0, i1) == (0, x.shape[1]) else x[:, i0:i1]
        y = frame_conv(layer, xp, part.kernels[0], part.bias, part.groups)  # type: ignore[arg-type]
        for fk in part.kernels[1:]:
            y += frame_conv(layer, xp, fk, None, part.groups)  # type: ignore[arg-type]
        outs.append(y)
    if form.dynamic is not None:
        (i0, i1), g, wd, bd = form.dynamic
        xd = x if (i0, i1) == (0, x.shape[1]) else x[:, i0:i1]
        outs.append(F.conv3d(xd, wd, bd, layer.stride, layer._pad3, 1, g))
    y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    # float32 convolutions keep channels_last_3d by themselves; slower dtypes' kernels may not (then one copy)
    return y.contiguous(memory_format=torch.channels_last_3d) if channels_last else y
