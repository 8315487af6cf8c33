"""The STS static modes as one table: which temporal slices of a 3D kernel become which 2D kernels on each frame.

Paper §3.2, Appendix A (eq. 1) and Appendix Table 2; ``docs/method.md`` restates the computation. A static filter
of a ``(3, k, k)`` kernel always keeps its centre slice as a ``k x k`` convolution on every frame; each mode says
what happens to the two side slices. ``(3, 1, 1)`` kernels have no spatial extent: a mode says whether the three
temporal taps are laid out in space (first half of the static filters along W, second half along H) or only the
centre tap is kept.

Adding a mode = one :class:`StaticModeSpec` entry in :data:`STATIC_MODE_SPECS` plus its test; the layer, its
inference form (:func:`vidprior.fuse_sts`) and the configuration's allowed values all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

Shape2d = Literal["square", "row", "column"]


@dataclass(frozen=True)
class SideSlice:
    """How temporal slice ``tap`` (0 = first, 2 = last) of a ``(3, k, k)`` static filter acts on each frame.

    ``shape``: ``"square"`` keeps the ``k x k`` slice; ``"row"`` reads its ``k^2`` taps row-major as a
    ``1 x k^2`` kernel along W; ``"column"`` as a ``k^2 x 1`` kernel along H. ``dilated``: taps spaced
    ``static_dilation`` apart. Every kernel is centred on the centre slice's output position ("same" alignment).
    """

    tap: int
    shape: Shape2d
    dilated: bool = False


@dataclass(frozen=True)
class StaticModeSpec:
    """One static mode. ``temporal``: what a ``(3, 1, 1)`` static filter does: ``"split"`` = taps as ``1 x 3``
    (first half of the static filters) and ``3 x 1`` (second half), ``"center"`` = the centre tap only.
    ``temporal_dilated``: in ``"split"``, taps spaced ``static_dilation`` apart. ``official``: the authors'
    flattened-frame layout exists for this mode. ``equal_macs``: as many multiply-adds as the Conv3d."""

    name: str
    side_slices: tuple[SideSlice, ...]
    temporal: Literal["split", "center"]
    temporal_dilated: bool
    official: bool
    equal_macs: bool
    summary: str


STATIC_MODE_SPECS: dict[str, StaticModeSpec] = {
    spec.name: spec
    for spec in (
        StaticModeSpec(
            "cross",
            (SideSlice(0, "row"), SideSlice(2, "column")),
            temporal="split",
            temporal_dilated=False,
            official=True,
            equal_macs=True,
            summary="first slice as a 1 x k^2 row, last slice as a k^2 x 1 column (Appendix A, eq. 1; default)",
        ),
        StaticModeSpec(
            "center",
            (),
            temporal="center",
            temporal_dilated=False,
            official=True,
            equal_macs=False,
            summary="centre slice only: the 'w/o splitting' ablation (Table 10)",
        ),
        StaticModeSpec(
            "dilated",
            (SideSlice(0, "square", dilated=True), SideSlice(2, "square", dilated=True)),
            temporal="split",
            temporal_dilated=True,
            official=False,
            equal_macs=True,
            summary="side slices as k x k kernels dilated by static_dilation (Appendix Table 2)",
        ),
    )
}

STATIC_MODES: tuple[str, ...] = tuple(STATIC_MODE_SPECS)


@dataclass(frozen=True)
class FrameKernel:
    """A 2D kernel applied to every frame: ``weight`` ``(n, C_in/g, kh, kw)``, its ``dilation`` and how far it
    reaches beyond the centre on each side (``reach``, in input pixels), which sets its "same" padding."""

    weight: Tensor
    dilation: tuple[int, int]
    reach: tuple[int, int]


def _frame_kernel(w: Tensor, dilation: tuple[int, int]) -> FrameKernel:
    kh, kw = w.shape[-2], w.shape[-1]
    return FrameKernel(w, dilation, (dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2))


def spatial_kernels(spec: StaticModeSpec, w: Tensor, static_dilation: int) -> list[FrameKernel]:
    """The 2D kernels whose sum is the static output of ``(3, k, k)`` filters ``w`` ``(n, C_in/g, 3, k, k)``."""
    n, cin, _, k, _ = w.shape
    out = [_frame_kernel(w[:, :, 1], (1, 1))]
    for side in spec.side_slices:
        s = w[:, :, side.tap]  # (n, C_in/g, k, k)
        if side.shape == "row":
            s = s.reshape(n, cin, 1, k * k)  # row-major taps along W
        elif side.shape == "column":
            s = s.reshape(n, cin, k * k, 1)  # row-major taps along H
        d = static_dilation if side.dilated else 1
        out.append(_frame_kernel(s, (d, d)))
    return out


def temporal_kernels(spec: StaticModeSpec, w: Tensor, num_horizontal: int, static_dilation: int) -> list[FrameKernel]:
    """The 2D kernels of ``(3, 1, 1)`` static filters ``w`` ``(n, C_in/g, 3, 1, 1)``: ``[horizontal, vertical]``
    in ``"split"`` (either may have 0 filters), or one ``1 x 1`` kernel in ``"center"``."""
    n, cin = w.shape[0], w.shape[1]
    if spec.temporal == "center":
        return [_frame_kernel(w[:, :, 1], (1, 1))]
    d = static_dilation if spec.temporal_dilated else 1
    h = w[:num_horizontal].reshape(num_horizontal, cin, 1, 3)  # (n_h, C, 3, 1, 1) -> taps along W
    v = w[num_horizontal:].reshape(n - num_horizontal, cin, 3, 1)  # taps along H
    return [_frame_kernel(h, (1, d)), _frame_kernel(v, (d, 1))]


def embed(kernels: list[FrameKernel]) -> FrameKernel:
    """The sum of ``kernels`` (same filters) as ONE dense undilated 2D kernel, zeros where no tap lands."""
    rh = max(fk.reach[0] for fk in kernels)
    rw = max(fk.reach[1] for fk in kernels)
    w0 = kernels[0].weight
    e = w0.new_zeros(w0.shape[0], w0.shape[1], 2 * rh + 1, 2 * rw + 1)
    for fk in kernels:
        kh, kw = fk.weight.shape[-2:]
        dh, dw = fk.dilation
        top, left = rh - fk.reach[0], rw - fk.reach[1]
        e[:, :, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw] += fk.weight
    return FrameKernel(e, (1, 1), (rh, rw))


def mode_error_hint() -> str:
    return ", ".join(f"{name!r}: {spec.summary}" for name, spec in STATIC_MODE_SPECS.items())


__all__ = [
    "STATIC_MODES",
    "STATIC_MODE_SPECS",
    "FrameKernel",
    "SideSlice",
    "StaticModeSpec",
    "embed",
    "mode_error_hint",
    "spatial_kernels",
    "temporal_kernels",
]
