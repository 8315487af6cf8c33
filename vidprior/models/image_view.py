"""The 2D counterpart of a 3D model, for image pre-training (paper §3.2, App. B.1).

``image_model(model)`` returns a copy of the model in which every 3D layer is replaced by its 2D counterpart: each
Conv3d becomes a Conv2d holding the temporal tap that a one-frame clip meets (the centre slice for "same" temporal
padding), BatchNorm3d becomes BatchNorm2d, 3D pools become 2D pools. An STSConv3d becomes an :class:`ImageSTSConv`,
which keeps the 3D kernel (the static filters use their side slices as spatial convolutions on an image, as they do
on every frame of a clip; paper Table 10 pre-trains with STS on). Module names are unchanged, so the image model's
state dict maps one to one onto the 3D model's (4-D kernels where the 3D model has 5-D ones, 5-D for STS layers)
and goes back through :func:`vidprior.inflate_state_dict` with any inflation mode.

``image_model(model, tap=t)`` takes, in every conv with a temporal kernel longer than 1, the slice ``t`` taps away
from that one instead: for a 3-tap kernel ``tap = -1, 0, +1`` give the paper's t1-, t2- and t3-CNNs (§3.1,
Table 1: linear probing of the temporal slices of a 3D model trained on video); a 5-tap kernel gives its slice at
the same offset from its centre, and 1-tap convs keep their only tap. With ``tap != 0`` the result no longer
computes what the 3D model computes on a one-frame clip, and STS layers become plain slices too. (Slices are
meaningful for plain 3D convs; the static channels of an STS conv do not use their taps along time.)

On an image ``(B, 3, H, W)`` it computes exactly what the 3D model (with or without STS) computes on the one-frame
clip ``(B, 3, 1, H, W)``, without multiplying the zero-padded temporal taps. Forward code of vidprior's blocks is
written for both 4-D and 5-D tensors (for example SlowFast samples its pathways only when a time axis exists).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidprior.errors import VidpriorError
from vidprior.layers.sts import STSConv3d


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


class ImageSTSConv(nn.Module):
    """What an :class:`~vidprior.layers.sts.STSConv3d` computes on a one-frame clip, as 2D convolutions of an image.

    The 3D kernel ``weight`` ``(C_out, C_in/g, 3, k, k)`` and ``bias`` are kept with their names and shapes, so
    the image checkpoint goes back into the 3D STS layer with every tap. On a one-frame clip (temporal padding 1)
    the dynamic filters meet the frame with their centre slice only; the static filters work on each frame on
    their own, so they keep their side slices as spatial convolutions: ``1 x k^2`` / ``k^2 x 1`` in ``cross``
    mode (``1 x 3`` / ``3 x 1`` for ``(3, 1, 1)`` kernels), dilated ``k x k`` in ``dilated`` mode, none in
    ``center`` mode; with ``layout="official"`` the row and column convolutions run over each image flattened to one
    sequence, as the 3D layer does. Paper §3.2 and App. A eq. 1; Table 10 (STS on during image pre-training).

    Hand-written because no library has STS; built from the 3D layer's public attributes only.
    """

    def __init__(self, conv: STSConv3d) -> None:
        super().__init__()
        kt, kh, kw = conv.kernel_size
        pad = conv.padding
        if isinstance(pad, str):
            pad = (0, 0, 0) if pad == "valid" else (1, (kh - 1) // 2, (kw - 1) // 2)
        if kt != 3 or pad[0] != 1:
            raise VidpriorError(
                f"{conv}: an STS layer maps a one-frame clip to one frame only with temporal padding 1; this one has "
                f"padding {tuple(pad)}"
            )
        if conv.static_mode not in ("cross", "center", "dilated"):
            raise VidpriorError(f"{conv}: no image view for static_mode={conv.static_mode!r}")
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride[1:])
        self.padding = (int(pad[1]), int(pad[2]))
        self.static_mode, self.static_dilation, self.layout = conv.static_mode, conv.static_dilation, conv.layout
        self.num_static, self.static_groups = conv.num_static, conv.static_groups
        self.num_horizontal, self.horizontal_groups = conv.num_horizontal, conv.horizontal_groups
        self.weight = conv.weight  # (C_out, C_in/g, 3, k, k): the 3D layer's Parameter, all three slices
        self.bias = conv.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"static={self.num_static}/{self.out_channels}, static_mode={self.static_mode!r}, layout={self.layout!r}"
        )

    def _conv(self, x: Tensor, w: Tensor, b: Tensor | None, pad: tuple[int, int], groups: int, dil: int = 1) -> Tensor:
        """2D conv with the layer's stride; negative paddings crop the input on both sides, as the 3D layer does."""
        crop = [max(-p, 0) for p in pad]
        if any(crop):
            h, w_ = x.shape[-2:]
            x = x[..., crop[0] : h - crop[0], crop[1] : w_ - crop[1]]
        return F.conv2d(x, w, b, self.stride, tuple(max(p, 0) for p in pad), dil, groups)

    def _flat(self, x: Tensor, w: Tensor, b: Tensor | None, groups: int, *, transpose: bool) -> Tensor:
        """Row (column) conv over each image flattened to one sequence in (h w) ((w h)) order; stride s -> s*s."""
        s, taps = self.stride[0], w.shape[-1] * w.shape[-2]
        n, cin = w.shape[0], w.shape[1]
        if transpose:
            x = x.transpose(2, 3)  # (B, C, W, H): the sequence runs down the columns
        bsz, _, h, wd = x.shape
        seq = x.reshape(bsz, cin * groups, 1, h * wd)  # (B, C, 1, H*W)
        y = F.conv2d(seq, w.reshape(n, cin, 1, taps), b, (1, s * s), (0, (taps - 1) // 2), 1, groups)
        ho, wo = (h - 1) // s + 1, (wd - 1) // s + 1
        return y.view(bsz, n, ho, wo).transpose(2, 3) if transpose else y.view(bsz, n, ho, wo)

    def _static(self, x: Tensor, w: Tensor, b: Tensor | None, g: int) -> Tensor:
        k, (ph, pw) = self.kernel_size[1], self.padding
        c = (k - 1) // 2
        d = self.static_dilation if self.static_mode == "dilated" else 1
        if k == 1 and self.static_mode != "center":  # (3, 1, 1): the taps along W (first half) or H (second half)
            n_h = self.num_horizontal
            if self.groups == 1:
                x_h = x_v = x
                g_h = g_v = 1
            else:
                split = self.horizontal_groups * (self.in_channels // self.groups)
                x_h, x_v = x[:, :split], x[:, split:]
                g_h, g_v = self.horizontal_groups, self.static_groups - self.horizontal_groups
            w_h = w[:n_h].reshape(n_h, w.shape[1], 1, 3)  # (n_h, C, 3, 1, 1) -> (n_h, C, 1, 3)
            w_v = w[n_h:].reshape(w.shape[0] - n_h, w.shape[1], 3, 1)  # (n_v, C, 3, 1, 1) -> (n_v, C, 3, 1)
            b_h, b_v = (None, None) if b is None else (b[:n_h], b[n_h:])
            outs = []
            if n_h > 0:
                if self.layout == "official":
                    outs.append(self._flat(x_h, w_h, b_h, g_h, transpose=False))
                else:
                    outs.append(self._conv(x_h, w_h, b_h, (ph, pw + d), g_h, d))
            if w_v.shape[0] > 0:
                if self.layout == "official":
                    outs.append(self._flat(x_v, w_v, b_v, g_v, transpose=True))
                else:
                    outs.append(self._conv(x_v, w_v, b_v, (ph + d, pw), g_v, d))
            return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        out = self._conv(x, w[:, :, 1], b, (ph, pw), g)  # centre slice, k x k
        if self.static_mode == "center":
            return out
        if self.static_mode == "dilated":
            pad = (ph - c + d * c, pw - c + d * c)
            return out + self._conv(x, w[:, :, 0], None, pad, g, d) + self._conv(x, w[:, :, 2], None, pad, g, d)
        n, cin, r = w.shape[0], w.shape[1], (k * k - 1) // 2
        w_row = w[:, :, 0].reshape(n, cin, 1, k * k)  # first slice, row-major taps along W
        w_col = w[:, :, 2].reshape(n, cin, k * k, 1)  # last slice, row-major taps along H
        if self.layout == "official":
            return out + self._flat(x, w_row, None, g, transpose=False) + self._flat(x, w_col, None, g, transpose=True)
        return (
            out
            + self._conv(x, w_row, None, (ph - c, pw - c + r), g)
            + self._conv(x, w_col, None, (ph - c + r, pw - c), g)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise VidpriorError(f"{type(self).__name__} takes images (B, C, H, W), got shape {tuple(x.shape)}")
        n, g_s, w, b = self.num_static, self.static_groups, self.weight, self.bias
        if n == 0:
            return self._conv(x, w[:, :, 1], b, self.padding, self.groups)
        cin_pg = self.in_channels // self.groups
        x_s, x_d = (x, x) if self.groups == 1 else (x[:, : g_s * cin_pg], x[:, g_s * cin_pg :])
        outs = [self._static(x_s, w[:n], None if b is None else b[:n], g_s if self.groups > 1 else 1)]
        if n < self.out_channels:  # dynamic filters: a one-frame clip meets their centre slice
            g_d = self.groups - g_s if self.groups > 1 else 1
            outs.append(self._conv(x_d, w[n:, :, 1], None if b is None else b[n:], self.padding, g_d))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)  # (B, C_out, H', W')


def _convert(module: nn.Module, tap: int = 0, name: str = "") -> nn.Module:
    if isinstance(module, STSConv3d) and module.num_static > 0 and tap == 0:
        return ImageSTSConv(module).train(module.training)
    if isinstance(module, nn.Conv3d):  # includes STSConv3d (its centre or `tap` slice when probing slices)
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
    return _convert(copy.deepcopy(model), tap)


_LAYERS_3D = (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)


def is_image_view(module: nn.Module) -> bool:
    """Whether ``module`` takes images: it has convolutions and none of them (nor any norm or pool) is 3D.

    True for :func:`image_model`'s result (and copies of it, e.g. an EMA copy), False for the 3D model."""
    has_conv = any(isinstance(m, (nn.Conv2d, ImageSTSConv)) for m in module.modules())
    return has_conv and not any(isinstance(m, _LAYERS_3D) for m in module.modules())
