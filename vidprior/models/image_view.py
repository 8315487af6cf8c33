"""The 2D counterpart of a 3D model, for image pre-training (paper §3.2, App. B.1).

``image_model(model)`` returns a copy of the model in which every 3D layer is replaced by its 2D counterpart: each
Conv3d (and STSConv3d) becomes a Conv2d holding the temporal tap that a one-frame clip meets (the centre slice for
"same" temporal padding), BatchNorm3d becomes BatchNorm2d, 3D pools become 2D pools. Module names are unchanged,
so the image model's state dict maps one to one onto the 3D model's (4-D kernels where the 3D model has 5-D ones)
and goes back through :func:`vidprior.inflate_state_dict` with any inflation mode.

``image_model(model, tap=t)`` takes, in every conv with a temporal kernel longer than 1, the slice ``t`` taps away
from that one instead: for a 3-tap kernel ``tap = -1, 0, +1`` give the paper's t1-, t2- and t3-CNNs (§3.1,
Table 1: linear probing of the temporal slices of a 3D model trained on video); a 5-tap kernel gives its slice at
the same offset from its centre, and 1-tap convs keep their only tap. With ``tap != 0`` the result no longer
computes what the 3D model computes on a one-frame clip. (Slices are meaningful for plain 3D convs; the static
channels of an STS conv do not use their taps along time.)

On an image ``(B, 3, H, W)`` it computes exactly what the 3D model (without STS) computes on the one-frame clip
``(B, 3, 1, H, W)``, without multiplying the zero-padded temporal taps. Forward code of vidprior's blocks is written
for both 4-D and 5-D tensors (for example SlowFast samples its pathways only when a time axis exists).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vidprior.errors import VidpriorError


def _conv2d(conv: nn.Conv3d, tap: int = 0, name: str = "") -> nn.Conv2d:
    kt = conv.kernel_size[0]
    if isinstance(conv.padding, str):
        raise VidpriorError(f"cannot build the image view of a Conv3d with padding={conv.padding!r}")
    pt = conv.padding[0]
    if not 0 <= pt < kt or (1 + 2 * pt - kt) // conv.stride[0] + 1 != 1:
        raise VidpriorError(
            f"Conv3d with kernel {tuple(conv.kernel_size)}, temporal padding {pt} and stride {conv.stride[0]} does "
            "not map a one-frame clip to one frame; it has no 2D counterpart"
        )
    index = pt if kt == 1 else pt + tap  # a 1-tap conv has one slice whatever the tap
    if not 0 <= index < kt:
        raise VidpriorError(
            f"image view with tap={tap}: {name or type(conv).__name__} has temporal kernel {kt} (one-frame tap "
            f"{pt}), so it has no slice at offset {tap} (valid offsets {-pt}..{kt - 1 - pt})"
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
        new.weight.copy_(conv.weight[:, :, index])  # the tap that meets the frame (tap=0), or `tap` taps away
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


def _convert(module: nn.Module, tap: int = 0, name: str = "") -> nn.Module:
    if isinstance(module, nn.Conv3d):  # includes STSConv3d
        return _conv2d(module, tap, name).train(module.training)
    if isinstance(module, nn.BatchNorm3d):
        return _bn2d(module).train(module.training)  # eval-mode BNs must stay in eval mode
    if isinstance(module, (nn.MaxPool3d, nn.AdaptiveAvgPool3d)):
        return _pool2d(module).train(module.training)
    if isinstance(module, (nn.AvgPool3d, nn.AdaptiveMaxPool3d, nn.ConvTranspose3d, nn.Upsample)):
        raise VidpriorError(f"no 2D counterpart for {type(module).__name__}")
    for child_name, child in list(module.named_children()):
        setattr(module, child_name, _convert(child, tap, f"{name}.{child_name}" if name else child_name))
    return module


def image_model(model: nn.Module, tap: int = 0) -> nn.Module:
    """A new module: ``model`` with every 3D layer replaced by its 2D counterpart (same names; see module doc).

    ``tap``: which temporal slice each conv keeps, as an offset from the tap that meets a one-frame clip (the centre
    for "same" padding): ``-1, 0, +1`` = the paper's t1, t2, t3 (Table 1). Convs with a 1-tap temporal kernel ignore
    it; an offset outside some conv's kernel raises :class:`~vidprior.errors.VidpriorError` naming that conv.
    ``model`` itself is not modified. The result takes images ``(B, 3, H, W)``.
    """
    if isinstance(tap, bool) or not isinstance(tap, int):
        raise VidpriorError(f"tap={tap!r}: expected an integer offset (-1, 0, 1 for t1, t2, t3)")
    view = _convert(copy.deepcopy(model), tap)
    view.is_image_view = True
    return view
