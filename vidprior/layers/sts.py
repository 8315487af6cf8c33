"""Spatial-Temporal Separable (STS) convolution, a drop-in replacement for ``nn.Conv3d``.

Paper: "In Defense of Image Pre-Training for Spatiotemporal Recognition", ECCV 2022, §3.2 and Appendix A (eq. 1).
What the authors' code computes is summarised in ``../shared/reference/official-code.md`` §1; this module is a
self-contained re-implementation (no code from the authors' repository).

An STS convolution re-uses the weight of a temporal convolution ``W`` of shape ``(C_out, C_in/groups, 3, k, k)``
and splits its *output* filters in two groups:

* the **static** (appearance) group -- the first ``num_static`` filters -- works on each frame on its own: the
  centre temporal slice ``W[:, :, 1]`` is a ``k x k`` convolution, and the two side slices are re-shaped to
  enlarge the spatial receptive field (``static_mode``);
* the **dynamic** (motion) group -- the remaining filters -- is the ordinary 3D convolution of its filters.

Kernels ``(3, 1, 1)`` (the temporal convs of SlowOnly, SlowFast and R(2+1)D) have no spatial extent: their static
group is split once more, the first half using the three temporal taps as a horizontal ``1 x 3`` convolution per
frame and the second half as a vertical ``3 x 1`` convolution (official-code.md §1b).

Parameters, state-dict keys and multiply-adds equal those of the ``nn.Conv3d`` it replaces (modes ``"cross"``
and ``"dilated"``), so any Conv3d checkpoint loads strictly and back.

Why hand-written: no maintained library has STS; the layer re-uses PyTorch's own convolution kernels.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidprior.errors import StsShapeError, UnsupportedConvError, closest
from vidprior.layers._shift_sum import shift_sum

StaticMode = Literal["cross", "center", "dilated"]
Layout = Literal["zero_pad", "official"]
STATIC_MODES: tuple[str, ...] = ("cross", "center", "dilated")
LAYOUTS: tuple[str, ...] = ("zero_pad", "official")
STS_OPTIONS: tuple[str, ...] = ("static_ratio", "static_mode", "static_dilation", "layout")

_Size3 = tuple[int, int, int]


def parse_static_ratio(value: float | int | str) -> float:
    """Turn ``static_ratio`` into a share in ``[0, 1]``.

    Accepts a number (the share of output channels in the static group) or a ``"static:dynamic"`` string as in
    the paper's Table 10 (``"1:1"`` = 0.5, ``"1:2"`` = 1/3, ``"2:1"`` = 2/3).
    """
    share: float
    if isinstance(value, bool):
        raise UnsupportedConvError(f"static_ratio={value!r}: expected a number in [0, 1] or a 'static:dynamic' string")
    if isinstance(value, str):
        parts = value.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            a, b = float(parts[0]), float(parts[1])
        except ValueError:
            raise UnsupportedConvError(
                f"static_ratio={value!r}: expected a number in [0, 1] or a 'static:dynamic' string such as '1:2'"
            ) from None
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0 or a + b == 0:
            raise UnsupportedConvError(f"static_ratio={value!r}: both parts must be finite, >= 0 and not both 0")
        share = a / (a + b)
    elif isinstance(value, (int, float)):
        share = float(value)
    else:
        raise UnsupportedConvError(
            f"static_ratio={value!r} ({type(value).__name__}): expected a number in [0, 1] or a string like '1:1'"
        )
    if not math.isfinite(share) or not 0.0 <= share <= 1.0:
        raise UnsupportedConvError(
            f"static_ratio={value!r}: the share of static output channels must lie in [0, 1] "
            "(0.5 is the paper's 1:1 default; Table 10 also uses '1:2' and '2:1')"
        )
    return share


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def sts_support(
    kernel_size: _Size3,
    *,
    dilation: _Size3 = (1, 1, 1),
    padding_mode: str = "zeros",
) -> str | None:
    """Return why a Conv3d with these settings cannot become STS, or ``None`` if it can.

    Supported: temporal kernel 3, square odd spatial kernel ``k x k`` (``k = 1`` for the ``(3, 1, 1)`` temporal
    convs), no dilation, zero padding.
    """
    kt, kh, kw = kernel_size
    if kt != 3:
        return (
            f"kernel {tuple(kernel_size)} has temporal size {kt}; STS is defined for temporal kernel 3, "
            "i.e. kernels (3, 1, 1) and (3, k, k) with odd k"
        )
    if kh != kw:
        return f"kernel {tuple(kernel_size)} is not square in space; STS supports (3, 1, 1) and (3, k, k)"
    if kh % 2 == 0:
        return f"kernel {tuple(kernel_size)} has an even spatial size; STS needs an odd k (1, 3, 5, ...)"
    if tuple(dilation) != (1, 1, 1):
        return f"dilation {tuple(dilation)}: STS supports only undilated convolutions (dilation 1)"
    if padding_mode != "zeros":
        return f"padding_mode={padding_mode!r}: STS is defined with zero padding only"
    return None


class STSConv3d(nn.Conv3d):
    """Spatial-Temporal Separable convolution; same constructor, parameters and state dict as ``nn.Conv3d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device,
            dtype: as for ``nn.Conv3d``. The kernel must be ``(3, 1, 1)`` or ``(3, k, k)`` with odd ``k``,
            undilated, with zero padding.
        static_ratio: share of output channels in the static group (default 0.5 = the paper's 1:1), or a
            ``"static:dynamic"`` string (Table 10: ``"1:2"``, ``"2:1"``). For grouped and depthwise convs the
            split follows group boundaries (the share is rounded to whole groups); the static filters then read
            only their own groups' input channels. 0 gives exactly ``nn.Conv3d``.
        static_mode: ``"cross"`` (default; centre slice ``k x k`` + first slice as a ``1 x k^2`` conv along
            rows + last slice as a ``k^2 x 1`` conv along columns, Appendix A eq. 1), ``"center"`` (only the
            centre slice: the "w/o splitting" ablation of Table 10) or ``"dilated"`` (side slices as ``k x k``
            convs with dilation ``static_dilation``: Appendix Table 2). For ``(3, 1, 1)`` kernels ``"cross"`` is
            the ``1 x 3`` / ``3 x 1`` split and ``"dilated"`` spaces those taps ``static_dilation`` apart.
        static_dilation: dilation of the side slices in ``"dilated"`` mode (the paper ablates 2 and 3).
        layout: ``"zero_pad"`` (default): true 2D convolutions with zero padding, correct for any stride and size.
            ``"official"``: the authors' flattened-sequence computation (official-code.md §1a/§1b): the row and
            column convolutions run over each frame flattened to one sequence, so they wrap around row and
            column ends, and spatial stride ``s`` becomes stride ``s^2`` on the sequence (their stride-2
            behaviour). Use it to evaluate checkpoints fine-tuned with their code. It needs "same" padding,
            even frame sizes at stride 2, and spatial stride 1 for ``(3, 1, 1)`` kernels, as their code does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | _Size3,
        stride: int | _Size3 = 1,
        padding: int | _Size3 | str = 0,
        dilation: int | _Size3 = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        static_ratio: float | str = 0.5,
        static_mode: StaticMode = "cross",
        static_dilation: int = 2,
        layout: Layout = "zero_pad",
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self._configure(static_ratio, static_mode, static_dilation, layout)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_conv3d(cls, conv: nn.Conv3d, **sts_options) -> STSConv3d:
        """An STS layer that shares ``conv``'s weight and bias Parameters (no copy; optimizers stay valid)."""
        unknown = sorted(set(sts_options) - set(STS_OPTIONS))
        if unknown:
            hint = closest(unknown[0], STS_OPTIONS)
            raise UnsupportedConvError(f"unknown STS option(s) {unknown}{hint}; expected some of {STS_OPTIONS}")
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device="meta",  # placeholders only: replaced by conv's own Parameters below
            **sts_options,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        return new.train(conv.training)

    def to_conv3d(self) -> nn.Conv3d:
        """A plain ``nn.Conv3d`` sharing this layer's Parameters."""
        conv = nn.Conv3d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,  # type: ignore[arg-type]
            self.stride,  # type: ignore[arg-type]
            self.padding,  # type: ignore[arg-type]
            self.dilation,  # type: ignore[arg-type]
            self.groups,
            self.bias is not None,
            self.padding_mode,
            device="meta",
        )
        conv.weight = self.weight
        conv.bias = self.bias
        return conv.train(self.training)

    def _configure(self, static_ratio: float | str, static_mode: str, static_dilation: int, layout: str) -> None:
        desc = f"Conv3d({self.in_channels}, {self.out_channels}, kernel_size={tuple(self.kernel_size)})"
        why = sts_support(tuple(self.kernel_size), dilation=tuple(self.dilation), padding_mode=self.padding_mode)
        if why is not None:
            raise UnsupportedConvError(f"{desc} cannot be STS: {why}")
        if static_mode not in STATIC_MODES:
            raise UnsupportedConvError(
                f"static_mode={static_mode!r}{closest(str(static_mode), STATIC_MODES)}; expected one of {STATIC_MODES}"
            )
        if layout not in LAYOUTS:
            raise UnsupportedConvError(f"layout={layout!r}{closest(str(layout), LAYOUTS)}; expected one of {LAYOUTS}")
        if isinstance(static_dilation, bool) or not isinstance(static_dilation, int) or static_dilation < 2:
            raise UnsupportedConvError(
                f"static_dilation={static_dilation!r}: expected an integer >= 2 (the paper ablates 2 and 3)"
            )
        share = parse_static_ratio(static_ratio)
        k = self.kernel_size[1]
        if isinstance(self.padding, str):
            # 'valid' = 0; 'same' (stride 1 only, checked by nn.Conv3d) = half the (odd) kernel.
            pad: _Size3 = (0, 0, 0) if self.padding == "valid" else (1, (k - 1) // 2, (k - 1) // 2)
        else:
            pad = tuple(int(p) for p in self.padding)  # type: ignore[assignment]
        if layout == "official":
            if static_mode == "dilated":
                raise UnsupportedConvError(
                    f"{desc}: layout='official' reproduces the authors' code, which has no dilated mode; "
                    "use layout='zero_pad' with static_mode='dilated'"
                )
            if pad != (1, (k - 1) // 2, (k - 1) // 2):
                raise UnsupportedConvError(
                    f"{desc}: layout='official' needs 'same' padding (1, {(k - 1) // 2}, {(k - 1) // 2}) as the "
                    f"authors' code assumes; got padding {pad}. Use layout='zero_pad'"
                )
            if k == 1 and tuple(self.stride[1:]) != (1, 1):
                raise UnsupportedConvError(
                    f"{desc}: layout='official' does not cover spatial stride {tuple(self.stride[1:])} on a "
                    "(3, 1, 1) kernel (the authors' code ignores it and fails); use layout='zero_pad'"
                )

        groups = self.groups
        out_pg = self.out_channels // groups
        if groups == 1:
            num_static = _round_half_up(share * self.out_channels)
            static_groups = 1 if num_static > 0 else 0
        else:
            static_groups = _round_half_up(share * groups)
            num_static = static_groups * out_pg
        # (3, 1, 1): the static filters split again into a horizontal and a vertical half (first half horizontal,
        # the larger one when odd, as torch.chunk splits in the authors' code). Grouped convs split at groups.
        if groups == 1:
            num_horizontal = num_static - num_static // 2
            horizontal_groups = 1 if num_horizontal > 0 else 0
        else:
            horizontal_groups = static_groups - static_groups // 2
            num_horizontal = horizontal_groups * out_pg

        self.static_ratio = share
        self.static_mode = static_mode
        self.static_dilation = static_dilation
        self.layout = layout
        self.num_static = num_static
        self.static_groups = static_groups
        self.num_horizontal = num_horizontal
        self.horizontal_groups = horizontal_groups
        self._pad3 = pad

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f", static={self.num_static}/{self.out_channels}, static_mode={self.static_mode!r}"
        if self.static_mode == "dilated":
            s += f", static_dilation={self.static_dilation}"
        if self.layout != "zero_pad":
            s += f", layout={self.layout!r}"
        return s

    # ------------------------------------------------------------------ forward
    def forward(self, input: Tensor) -> Tensor:
        if input.dim() == 4:  # unbatched (C, T, H, W), as nn.Conv3d accepts
            return self.forward(input.unsqueeze(0)).squeeze(0)
        if input.dim() != 5:
            raise StsShapeError(
                f"STSConv3d expects (B, C, T, H, W) or (C, T, H, W) input, got shape {tuple(input.shape)}"
            )
        if self.num_static == 0:
            return self._conv_forward(input, self.weight, self.bias)
        self._check_input(input)
        if self._use_shift_path():
            return self._forward_shift(input)
        if self._use_frames_path():
            return self._forward_depthwise_frames(input)
        return self._forward_branches(input)

    def _out_size(self, size: _Size3) -> _Size3:
        k = self.kernel_size
        return tuple((n + 2 * p - kk) // s + 1 for n, p, kk, s in zip(size, self._pad3, k, self.stride))  # type: ignore[return-value]

    def _check_input(self, x: Tensor) -> None:
        if x.shape[1] != self.in_channels:
            raise StsShapeError(
                f"STSConv3d({self.in_channels}, {self.out_channels}) got {x.shape[1]} input channels "
                f"(input shape {tuple(x.shape)})"
            )
        out = self._out_size(tuple(x.shape[2:]))  # type: ignore[arg-type]
        if min(out) < 1:
            raise StsShapeError(
                f"input (T, H, W)={tuple(x.shape[2:])} is too small for kernel {tuple(self.kernel_size)} with "
                f"padding {self._pad3} and stride {tuple(self.stride)}"
            )
        if self.layout == "official" and self.kernel_size[1] > 1:
            s = self.stride[1]
            h, w = x.shape[3], x.shape[4]
            if s > 1 and (h % s or w % s):
                raise StsShapeError(
                    f"layout='official' with spatial stride {s} needs H and W divisible by {s} (the authors' "
                    f"flattened stride-{s * s} convolution cannot be reshaped otherwise); got H={h}, W={w}. "
                    "Use layout='zero_pad' or an input size divisible by the stride"
                )

    # The dense (3, 1, 1) case at stride 1 runs as one 1x1x1 convolution producing all three taps of every filter,
    # followed by adding the tap outputs shifted along T (dynamic), W (horizontal) or H (vertical). One large
    # convolution is much faster on CPU than three narrow ones over the same input (benchmarks/sts_layer.py).
    def _use_shift_path(self) -> bool:
        return (
            self.kernel_size[1] == 1
            and self.groups == 1
            and self.layout == "zero_pad"
            and self.static_mode in ("cross", "dilated")
            and tuple(self.stride) == (1, 1, 1)
            and self._pad3 == (1, 0, 0)
        )

    def _forward_shift(self, x: Tensor) -> Tensor:
        c_out = self.out_channels
        d = self.static_dilation if self.static_mode == "dilated" else 1
        # (C_out, C_in, 3, 1, 1) -> (3*C_out, C_in, 1, 1, 1): output row 3*c + tap is that tap of filter c
        w = self._taps_as_filters()
        bias = None if self.bias is None else self._centre_tap_bias()
        z = F.conv3d(x, w, bias)  # (B, 3*C_out, T, H, W) in the input's memory format
        n_h, n_s = self.num_horizontal, self.num_static
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

    def _taps_as_filters(self) -> Tensor:
        """(C_out, C_in/g, 3, k, k) -> (3*C_out, C_in/g, 1, k, k): filter 3*c + tap is slice ``tap`` of filter c."""
        w = self.weight
        return w.transpose(1, 2).reshape(3 * w.shape[0], w.shape[1], 1, w.shape[3], w.shape[4])

    def _centre_tap_bias(self) -> Tensor:
        """Bias for :meth:`_taps_as_filters`: the layer's bias on the centre tap, zero on the side taps."""
        b = self.bias
        zeros = b.new_zeros(b.shape[0])
        return torch.stack([zeros, b, zeros], dim=1).reshape(-1)

    # Depthwise (3, k, k) convs (CSN, X3D) run as 2D depthwise convolutions over the frames, in channels-last
    # layout: PyTorch's 2D depthwise kernels are much faster on CPU than its 3D ones. The dynamic filters become a
    # channel-multiplier-3 depthwise conv (one output per temporal tap) followed by the shifted sum along T.
    def _use_frames_path(self) -> bool:
        k = self.kernel_size[1]
        return (
            k > 1
            and self.groups == self.in_channels == self.out_channels
            and self.layout == "zero_pad"
            and self.stride[0] == 1
            and self._pad3 == (1, (k - 1) // 2, (k - 1) // 2)
        )

    def _forward_depthwise_frames(self, x: Tensor) -> Tensor:
        b, ch, t, h, w = x.shape
        n, k, s = self.num_static, self.kernel_size[1], self.stride[1]
        c = (k - 1) // 2
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        wt, bias = self.weight, self.bias
        parts = []

        m = ch - n
        # (B, C, T, H, W) -> (B, T, H, W, C) split into the static and dynamic channels, each made contiguous
        # (one pass over the input; torch.split, unlike slicing, does not zero-fill a full-size gradient per part)
        xs, xd = torch.split(x.permute(0, 2, 3, 4, 1), [n, m], dim=-1)

        def frames(part: Tensor) -> Tensor:  # (B, T, H, W, m) -> (B*T, m, H, W) with channels-last strides
            return part.contiguous().view(b * t, h, w, part.shape[-1]).permute(0, 3, 1, 2)

        if n > 0:
            fs = frames(xs)
            ws = wt[:n, :, :, :, :]  # (n, 1, 3, k, k)
            ys = F.conv2d(fs, ws[:, :, 1], None if bias is None else bias[:n], s, c, 1, n)
            if self.static_mode == "cross":
                r = (k * k - 1) // 2
                ys = ys + F.conv2d(fs, ws[:, :, 0].reshape(n, 1, 1, k * k), None, s, (0, r), 1, n)
                ys = ys + F.conv2d(fs, ws[:, :, 2].reshape(n, 1, k * k, 1), None, s, (r, 0), 1, n)
            elif self.static_mode == "dilated":
                dl = self.static_dilation
                for tap in (0, 2):
                    ys = ys + F.conv2d(fs, ws[:, :, tap], None, s, dl * c, dl, n)
            parts.append(ys.permute(0, 2, 3, 1).reshape(b, t, ho, wo, n))  # (B*T, n, H', W') -> (B, T, H', W', n)
        if m > 0:
            fd = frames(xd)
            wd = wt[n:].reshape(3 * m, 1, k, k)  # (m, 1, 3, k, k) -> filter 3*c + tap = slice tap of filter c
            bd = None
            if bias is not None:
                zeros = bias.new_zeros(m)
                bd = torch.stack([zeros, bias[n:], zeros], dim=1).reshape(-1)  # bias on the centre tap only
            z = F.conv2d(fd, wd, bd, s, c, 1, m)  # (B*T, 3m, H', W'), channels-last
            z = z.permute(0, 2, 3, 1).reshape(b, t, ho, wo, m, 3)  # (B, T, H', W', m, 3)
            parts.append(shift_sum(z, tap_dim=5, channel_dim=4, segments=((0, m, 1, 1),)))  # (B, T, H', W', m)
        y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # (B, T, H', W', C)
        y = y.permute(0, 4, 1, 2, 3)  # (B, C, T, H', W'), channels_last_3d strides
        return y.contiguous() if x.is_contiguous() else y

    def _forward_branches(self, x: Tensor) -> Tensor:
        c_in_pg = self.in_channels // self.groups
        n_s, g_s = self.num_static, self.static_groups
        w, b = self.weight, self.bias
        if self.groups == 1:
            x_static = x_dynamic = x
        else:
            x_static, x_dynamic = x[:, : g_s * c_in_pg], x[:, g_s * c_in_pg :]
        outs = [self._static(x_static, w[:n_s], None if b is None else b[:n_s])]
        if n_s < self.out_channels:
            outs.append(
                F.conv3d(
                    x_dynamic,
                    w[n_s:],
                    None if b is None else b[n_s:],
                    self.stride,
                    self._pad3,
                    1,
                    self.groups - g_s if self.groups > 1 else 1,
                )
            )
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    # ------------------------------------------------------------------ static branch
    def _static(self, xs: Tensor, ws: Tensor, bs: Tensor | None) -> Tensor:
        k = self.kernel_size[1]
        if k == 1 and self.static_mode != "center":
            return self._static_temporal_kernel(xs, ws, bs)
        n, cin = ws.shape[0], ws.shape[1]
        g = self.static_groups if self.groups > 1 else 1
        c = (k - 1) // 2
        _, ph, pw = self._pad3
        out = self._frame_conv(xs, ws[:, :, 1:2], bs, (ph, pw), groups=g)  # centre slice: k x k on every frame
        if self.static_mode == "center":
            return out
        if self.static_mode == "dilated":
            d = self.static_dilation
            pad = (ph - c + d * c, pw - c + d * c)
            out = out + self._frame_conv(xs, ws[:, :, 0:1], None, pad, groups=g, dilation=d)
            return out + self._frame_conv(xs, ws[:, :, 2:3], None, pad, groups=g, dilation=d)
        r = (k * k - 1) // 2  # half length of the k^2-tap row / column kernels
        w_row = ws[:, :, 0].reshape(n, cin, 1, 1, k * k)  # first slice, row-major taps along W
        w_col = ws[:, :, 2].reshape(n, cin, 1, k * k, 1)  # last slice, row-major taps along H
        if self.layout == "official":
            return out + self._flat_conv(xs, w_row, g, transpose=False) + self._flat_conv(xs, w_col, g, transpose=True)
        out = out + self._frame_conv(xs, w_row, None, (ph - c, pw - c + r), groups=g)
        return out + self._frame_conv(xs, w_col, None, (ph - c + r, pw - c), groups=g)

    def _static_temporal_kernel(self, xs: Tensor, ws: Tensor, bs: Tensor | None) -> Tensor:
        """(3, 1, 1) kernels: horizontal 1 x 3 half and vertical 3 x 1 half (taps spaced ``d`` in dilated mode)."""
        n_h, cin = self.num_horizontal, ws.shape[1]
        d = self.static_dilation if self.static_mode == "dilated" else 1
        _, ph, pw = self._pad3
        if self.groups == 1:
            x_h = x_v = xs
            g_h = g_v = 1
        else:
            split = self.horizontal_groups * (self.in_channels // self.groups)
            x_h, x_v = xs[:, :split], xs[:, split:]
            g_h, g_v = self.horizontal_groups, self.static_groups - self.horizontal_groups
        # (n, C_in/g, 3, 1, 1) -> (n, C_in/g, 1, 1, 3): the three temporal taps become taps along W (a view)
        w_h = ws[:n_h].reshape(n_h, cin, 1, 1, 3)
        w_v = ws[n_h:].reshape(ws.shape[0] - n_h, cin, 1, 3, 1)
        b_h = None if bs is None else bs[:n_h]
        b_v = None if bs is None else bs[n_h:]
        outs = []
        if n_h > 0:
            if self.layout == "official":
                outs.append(self._flat_conv(x_h, w_h, g_h, transpose=False, bias=b_h))
            else:
                outs.append(self._frame_conv(x_h, w_h, b_h, (ph, pw + d), groups=g_h, dilation=d))
        if w_v.shape[0] > 0:
            if self.layout == "official":
                outs.append(self._flat_conv(x_v, w_v, g_v, transpose=True, bias=b_v))
            else:
                outs.append(self._frame_conv(x_v, w_v, b_v, (ph + d, pw), groups=g_v, dilation=d))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def _frame_conv(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        pad_hw: tuple[int, int],
        *,
        groups: int,
        dilation: int = 1,
    ) -> Tensor:
        """Per-frame 2D convolution of a ``(n, C, 1, kh, kw)`` kernel, aligned with the 3D conv's output grid.

        The temporal kernel is 1 with padding ``pt - 1`` (the centre tap of the 3D kernel reads frame
        ``t * st - pt + 1``) and temporal stride ``st``: the static branch takes every ``st``-th frame.
        Negative paddings (input smaller than the "same" alignment needs) become crops.
        """
        pads = (self._pad3[0] - 1, pad_hw[0], pad_hw[1])
        crop = [max(-p, 0) for p in pads]
        if any(crop):
            t, h, wd = x.shape[2:]
            x = x[:, :, crop[0] : t - crop[0], crop[1] : h - crop[1], crop[2] : wd - crop[2]]
        return F.conv3d(x, w, b, self.stride, tuple(max(p, 0) for p in pads), (1, dilation, dilation), groups)

    def _flat_conv(self, x: Tensor, w: Tensor, groups: int, *, transpose: bool, bias: Tensor | None = None) -> Tensor:
        """The authors' row (column) convolution: each frame flattened to one sequence in (h w) ((w h)) order.

        ``w`` is ``(n, C, 1, 1, L)`` (row) or ``(n, C, 1, L, 1)`` (column) with ``L`` taps; spatial stride ``s``
        becomes stride ``s * s`` on the sequence and the result is read back as an ``(H/s, W/s)`` frame, exactly
        as in official-code.md §1a (including the wrap-around at row ends and the stride-2 scrambling).
        """
        st, s = self.stride[0], self.stride[1]
        n, cin = w.shape[0], w.shape[1]
        taps = w.shape[3] * w.shape[4]
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
