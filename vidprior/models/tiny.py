"""Tiny members of the 3D ResNet families, for tests and ``vidprior quickstart``.

One bottleneck block per stage, the block types of SlowOnly (3x1x1 ``conv1`` in res4/res5) and ir-CSN (depthwise
3x3x3 ``conv2`` everywhere), parameter names identical to the full models'. The geometry is a keyword argument:
at the paper's 224 px the STS layers of SlowOnly-R50 see 14x14 (res4) and 7x7 (res5) maps (paper §3.2); the
default strides ``(1, 2, 2, 2)`` on a 32 px quickstart frame give them 2x2 and 1x1, where STS's 1x3 / 3x1 static
convolutions degenerate. ``spatial_strides=(1, 1, 1, 1)`` keeps every stage at frame / 4 (8x8 at 32 px), so the STS
layers see maps of at least 7x7 as in the paper; see docs/quickstart.md.
"""

from __future__ import annotations

from vidprior.models._registry import register_model
from vidprior.models.base import VideoClassifier
from vidprior.models.resnet3d import resnet3d

Strides = tuple[int, int, int, int]


def _tiny(variant: str, *, num_classes: int, dropout: float, width: int, spatial_strides: Strides) -> VideoClassifier:
    """The full family's builder (:func:`~vidprior.models.resnet3d.resnet3d`) with one block per stage, ``width``
    stem channels and the given stage strides."""
    strides = tuple(int(s) for s in spatial_strides)
    if len(strides) != 4 or any(s not in (1, 2) for s in strides):
        raise ValueError(f"spatial_strides={spatial_strides!r}: expected four strides, each 1 or 2")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width={width!r}: expected a positive integer (channels of the stem)")
    # No zero-init of the residual BNs: in the quickstart's short schedules it slowed learning.
    return resnet3d(
        variant,
        num_classes=num_classes,
        dropout=dropout,
        base_channels=width,
        stage_blocks=(1, 1, 1, 1),
        spatial_strides=strides,
        zero_init_residual=False,
    )


@register_model
def slowonly_tiny(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    width: int = 16,
    spatial_strides: Strides = (1, 2, 2, 2),
) -> VideoClassifier:
    """SlowOnly with one block per stage and ``width`` stem channels (16: a quarter of R50's); STS layers: the
    3x1x1 conv1 of res4 and res5. ``spatial_strides``: the stride of each stage (res2..res5)."""
    return _tiny("slowonly50", num_classes=num_classes, dropout=dropout, width=width, spatial_strides=spatial_strides)


@register_model
def csn_tiny(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    width: int = 16,
    spatial_strides: Strides = (1, 2, 2, 2),
) -> VideoClassifier:
    """ir-CSN with one block per stage and ``width`` stem channels; STS layers: the depthwise 3x3x3 conv2 of every
    block. ``spatial_strides``: the stride of each stage (res2..res5)."""
    return _tiny("csn50", num_classes=num_classes, dropout=dropout, width=width, spatial_strides=spatial_strides)


__all__ = ["csn_tiny", "slowonly_tiny"]
