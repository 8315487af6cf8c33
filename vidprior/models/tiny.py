"""Tiny members of the 3D ResNet families, for tests and ``vidprior quickstart``.

One bottleneck block per stage, the block types of SlowOnly (3x1x1 ``conv1`` in res4/res5) and ir-CSN (depthwise
3x3x3 ``conv2`` everywhere), parameter names identical to the full models'. The geometry is a keyword argument:
at the paper's 224 px the STS layers of SlowOnly-R50 see 14x14 (res4) and 7x7 (res5) maps (paper §3.2); the
default strides ``(1, 2, 2, 2)`` on a 32 px quickstart frame give them 2x2 and 1x1, where STS's 1x3 / 3x1 static
convolutions degenerate. ``spatial_strides=(1, 1, 1, 1)`` keeps every stage at frame / 4 (8x8 at 32 px), so the STS
layers see maps of at least 7x7 as in the paper; see docs/quickstart.md.
"""

from __future__ import annotations

from torch import nn

from vidprior.models._registry import register_model
from vidprior.models.base import ClsHead, VideoClassifier, init_weights
from vidprior.models.resnet3d import ResNet3d

Strides = tuple[int, int, int, int]


def _tiny(
    *,
    num_classes: int,
    dropout: float,
    width: int,
    spatial_strides: Strides,
    inflate_style: str,
    depthwise: bool,
    conv1_kernel: tuple[int, int, int],
    bn_eps: float,
    default_clip: tuple[int, int],
) -> VideoClassifier:
    strides = tuple(int(s) for s in spatial_strides)
    if len(strides) != 4 or any(s not in (1, 2) for s in strides):
        raise ValueError(f"spatial_strides={spatial_strides!r}: expected four strides, each 1 or 2")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width={width!r}: expected a positive integer (channels of the stem)")
    backbone = ResNet3d(
        base_channels=width,
        stage_blocks=(1, 1, 1, 1),
        spatial_strides=strides,
        inflate=(0, 0, 1, 1) if inflate_style == "3x1x1" else (1, 1, 1, 1),
        inflate_style=inflate_style,  # type: ignore[arg-type]
        depthwise=depthwise,
        conv1_kernel=conv1_kernel,
        bn_eps=bn_eps,
    )
    # No zero-init of the residual BNs: in the quickstart's short schedules it slowed learning.
    init_weights(backbone, zero_init_residual=())
    # STS where the paper puts it in the full family: every temporal conv of the blocks.
    sts = [
        f"backbone.{name}"
        for name, m in backbone.named_modules()
        if isinstance(m, nn.Conv3d) and m.kernel_size[0] == 3 and ".conv" in name and name.startswith("layer")
    ]
    head = ClsHead(backbone.out_channels, num_classes, dropout=dropout)
    return VideoClassifier(backbone, head, default_clip=default_clip, sts_layers=sts)


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
    return _tiny(
        num_classes=num_classes,
        dropout=dropout,
        width=width,
        spatial_strides=spatial_strides,
        inflate_style="3x1x1",
        depthwise=False,
        conv1_kernel=(1, 7, 7),
        bn_eps=1e-5,
        default_clip=(8, 8),
    )


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
    return _tiny(
        num_classes=num_classes,
        dropout=dropout,
        width=width,
        spatial_strides=spatial_strides,
        inflate_style="3x3x3",
        depthwise=True,
        conv1_kernel=(3, 7, 7),
        bn_eps=1e-3,
        default_clip=(32, 2),
    )


__all__ = ["csn_tiny", "slowonly_tiny"]
