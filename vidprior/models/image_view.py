"""The 2D counterpart of a 3D model, for image pre-training (paper §3.2, App. B.1).

``image_model(model)`` returns a copy of the model in which every 3D layer is replaced by its 2D counterpart: each
Conv3d (and STSConv3d) becomes a Conv2d holding the temporal tap that a one-frame clip meets (the centre slice for
"same" temporal padding), BatchNorm3d becomes BatchNorm2d, 3D pools become 2D pools. Module names are unchanged,
so the image model's state dict maps one to one onto the 3D model's (4-D kernels where the 3D model has 5-D ones)
and goes back through :func:`vidprior.inflate_state_dict` with any inflation mode.

On an image ``(B, 3, H, W)`` it computes exactly what the 3D model (without STS) computes on the one-frame clip
``(B, 3, 1, H, W)``, without multiplying the zero-padded temporal taps. Forward code of vidprior's blocks is written
for both 4-D and 5-D tensors (for example SlowFast samples its pathways only when a time axis exists).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vidprior.errors import VidpriorError


def _conv2d(conv: nn.Conv3d) -> nn.Conv2d:
    kt = conv.kernel_size[0]
    if isinstance(conv.padding, str):
        raise VidpriorError(f"cannot build the image view of a Conv3d with padding={conv.padding!r}")
    pt = conv.padding[0]
    if not 0 <= pt < kt or (1 + 2 * pt - kt) // conv.stride[0] + 1 != 1:
        raise VidpriorError(
            f"Conv3d with kernel {tuple(conv.kernel_size)}, temporal padding {pt} and stride {conv.stride[0]} does "
            "not map a one-frame clip to one frame; it has no 2D counterpart"
        )
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        tuple(conv.kernel_size[1:]),
        tuple(conv.stride[1:]),
        tuple(conv.padding[1:]),
        tuple(conv.dilation[1:]),
        conv.groups,
        conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, :, pt])  # the one tap that meets the frame
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _bn2d(bn: nn.BatchNorm3d) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(
        bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, bn.weight.device, bn.weight.dtype
    )
    new.load_state_dict(bn.state_dict())
    return new


def _pool2d(pool: nn.Module) -> nn.Module:
    if isinstance(pool, nn.MaxPool3d):
        k, s, p = (getattr(pool, a) for a in ("kernel_size", "stride", "padding"))
        k, s, p = ((v,) * 3 if isinstance(v, int) else tuple(v) for v in (k, s, p))
        if k[0] != 1 and not (p[0] * 2 + 1 >= k[0]):
            raise VidpriorError(f"MaxPool3d {k} pools over time; it has no 2D counterpart")
        return nn.MaxPool2d(k[1:], s[1:], p[1:], ceil_mode=pool.ceil_mode)
    if isinstance(pool, nn.AdaptiveAvgPool3d):
        size = pool.output_size
        size = (size,) * 3 if isinstance(size, int) or size is None else tuple(size)
        return nn.AdaptiveAvgPool2d(size[1:])
    raise VidpriorError(f"no 2D counterpart for {type(pool).__name__}")


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Conv3d):  # includes STSConv3d
        return _conv2d(module).train(module.training)
    if isinstance(module, nn.BatchNorm3d):
        return _bn2d(module).train(module.training)  # eval-mode BNs must stay in eval mode
    if isinstance(module, (nn.MaxPool3d, nn.AdaptiveAvgPool3d)):
        return _pool2d(module).train(module.training)
    if isinstance(module, (nn.AvgPool3d, nn.AdaptiveMaxPool3d, nn.ConvTranspose3d, nn.Upsample)):
        raise VidpriorError(f"no 2D counterpart for {type(module).__name__}")
    for name, child in list(module.named_children()):
        setattr(module, name, _convert(child))
    return module


def image_model(model: nn.Module) -> nn.Module:
    """A new module: ``model`` with every 3D layer replaced by its 2D counterpart (same names; see module doc).

    ``model`` itself is not modified. The result takes images ``(B, 3, H, W)``.
    """
    view = _convert(copy.deepcopy(model))
    view.is_image_view = True
    return view
