"""Spatial-Temporal Separable (STS) convolution, a drop-in replacement for ``nn.Conv3d``.

Paper: "In Defense of Image Pre-Training for Spatiotemporal Recognition", ECCV 2022, §3.2 and Appendix A (eq. 1).
``docs/method.md`` restates what the authors' code computes; this module is a self-contained re-implementation
(no code from the authors' repository).

An STS convolution re-uses the weight of a temporal convolution ``W`` of shape ``(C_out, C_in/groups, 3, k, k)``
and splits its *output* filters in two groups:

* the **static** (appearance) group -- the first ``num_static`` filters -- works on each frame on its own: the
  centre temporal slice ``W[:, :, 1]`` is a ``k x k`` convolution, and the two side slices are re-shaped to
  enlarge the spatial receptive field (``static_mode``);
* the **dynamic** (motion) group -- the remaining filters -- is the ordinary 3D convolution of its filters.

Kernels ``(3, 1, 1)`` (the temporal convs of SlowOnly, SlowFast and R(2+1)D) have no spatial extent: their static
group is split once more, the first half using the three temporal taps as a horizontal ``1 x 3`` convolution per
frame and the second half as a vertical ``3 x 1`` convolution (as the authors' code does).

The static modes (what each temporal slice becomes) are a table in :mod:`vidprior.layers.sts_modes`; the per-layer
computation is planned in :mod:`vidprior.layers.sts_plan`; faster forms for common shapes are in ``_fast_paths``.

Parameters, state-dict keys and multiply-adds equal those of the ``nn.Conv3d`` it replaces (modes ``"cross"``
and ``"dilated"``), so any Conv3d checkpoint loads strictly and back.

Why hand-written: no maintained library has STS; the layer re-uses PyTorch's own convolution kernels.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from vidprior.errors import StsShapeError, UnsupportedConvError, closest
from vidprior.layers._fast_paths import forward_depthwise_frames, forward_shift, use_frames_path, use_shift_path
from vidprior.layers.sts_infer import FusedForm, build_form, run_form
from vidprior.layers.sts_modes import STATIC_MODE_SPECS, STATIC_MODES, mode_error_hint
from vidprior.layers.sts_plan import branch_forward

StaticMode = Literal["cross", "center", "dilated"]  # the keys of sts_modes.STATIC_MODE_SPECS
Layout = Literal["zero_pad", "official"]
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
            ``"official"``: the authors' flattened-sequence computation (docs/method.md): the row and
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
                f"static_mode={static_mode!r}{closest(str(static_mode), STATIC_MODES)}; expected one of "
                f"{mode_error_hint()}"
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
            if not STATIC_MODE_SPECS[static_mode].official:
                raise UnsupportedConvError(
                    f"{desc}: layout='official' reproduces the authors' code, which has no {static_mode} mode; "
                    f"use layout='zero_pad' with static_mode={static_mode!r}"
                )
            if pad != (1, (k - 1) // 2, (k - 1) // 2):
                raise UnsupportedConvError(
                    f"{desc}: layout='official' needs 'same' padding (1, {(k - 1) // 2}, {(k - 1) // 2}) as the "
                    f"authors' code assumes; got padding {pad}. Use layout='zero_pad'"
                )
            if self.stride[1] != self.stride[2]:
                raise UnsupportedConvError(
                    f"{desc}: layout='official' needs the same spatial stride along H and W (the authors' code "
                    f"strides each flattened frame by s*s); got stride {tuple(self.stride)}. Use layout='zero_pad'"
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
        if not self.training and self._inference_form_applies():
            return run_form(self, input, self._cached_form())
        if use_shift_path(self):
            return forward_shift(self, input)
        if use_frames_path(self):
            return forward_depthwise_frames(self, input)
        return branch_forward(self, input, self.weight, self.bias)

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

    # eval(): the inference form (sts_infer.py), prepared once and rebuilt when the weights change (in place or
    # replaced: version counter and storage) or after train(). Not while a weight gradient is wanted, not while
    # compiling or tracing (the training form is the traceable one; vidprior.fuse_sts gives a fixed module), and
    # not on meta tensors or under a dispatch mode such as the FLOP counter of vidprior.profile (which counts the
    # layer's own multiply-adds, not the zero taps of merged kernels).
    def _inference_form_applies(self) -> bool:
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return False
        if self.weight.is_meta or is_in_torch_dispatch_mode():
            return False
        return not (torch.compiler.is_compiling() or torch.jit.is_tracing())

    def _form_key(self) -> tuple:
        key: tuple = (self.weight._version, self.weight.data_ptr(), self.weight.dtype, self.weight.device)
        if self.bias is not None:
            key += (self.bias._version, self.bias.data_ptr(), self.bias.dtype)
        return key

    def _cached_form(self) -> FusedForm:
        key = self._form_key()
        cache = self.__dict__.get("_form_cache")
        if cache is None or cache[0] != key:
            cache = (key, build_form(self))
            self.__dict__["_form_cache"] = cache
        return cache[1]

    def train(self, mode: bool = True) -> STSConv3d:
        self.__dict__.pop("_form_cache", None)
        return super().train(mode)

    def _use_shift_path(self) -> bool:
        return use_shift_path(self)

    def _use_frames_path(self) -> bool:
        return use_frames_path(self)

    def _forward_branches(self, x: Tensor) -> Tensor:
        return branch_forward(self, x, self.weight, self.bias)
