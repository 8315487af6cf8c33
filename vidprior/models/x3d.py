"""X3D (Feichtenhofer, CVPR 2020): X3D-XS, X3D-S, X3D-M, X3D-L, as the paper's authors ran it (mmaction2 0.x).

Architecture and parameter names follow mmaction2 0.x ``X3D`` / ``BlockX3D`` / ``X3DHead`` in the version the
authors fine-tuned with (authors' configs), so their checkpoints load strictly: ``backbone.conv1_s.conv.weight``,
``backbone.layer1.0.conv2.bn.running_mean``, ``backbone.layer1.0.se_module.fc1.bias``, ``cls_head.fc1.weight``.

* stem: ``conv1_s`` 1x3x3 stride (1,2,2), 3 -> 24, no BN, no activation; ``conv1_t`` depthwise 5x1x1 (BN, ReLU);
* four stages of ``ceil(gamma_d * (1, 2, 5, 3))`` blocks, widths ``24 * 2**i`` (24 * gamma_w rounded to a
  multiple of 8, mmaction2's ``_round_width``), expanded width ``int(gamma_b * width)``, spatial stride 2 in the
  first block of every stage;
* block: 1x1x1 (BN, ReLU) -> depthwise 3x3x3 (BN) -> squeeze-excitation on even-indexed blocks -> Swish ->
  1x1x1 (BN) + shortcut (1x1x1 projection with BN in the first block) -> ReLU;
* ``conv5`` 1x1x1 to ``int(gamma_b * 192)`` = 432 (BN, ReLU); head: pool -> ``fc1`` 432 -> 2048 (no bias) -> ReLU
  -> dropout -> ``fc2``.

X3D-XS, -S and -M share one network (gamma_w 1, gamma_b 2.25, gamma_d 2.2) and differ only in the clip they are fed
(frames x interval, and crop size); X3D-L has gamma_d 5. STS (paper, docs/method.md): the depthwise 3x3x3
``conv2`` of every block (26 in X3D-S, 4 of them with spatial stride 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from vidprior.layers.conv_module import ConvModule
from vidprior.models._registry import register_model
from vidprior.models.base import ClsHead, VideoClassifier, init_weights

_BASE_STAGE_BLOCKS = (1, 2, 5, 3)


def round_width(width: float, multiplier: float, *, min_width: int = 8, divisor: int = 8) -> int:
    """``width * multiplier`` rounded to the nearest multiple of ``divisor`` (at least ``min_width``), and never
    below 90% of the exact value (mmaction2 / PySlowFast ``_round_width``). A zero multiplier returns ``width``."""
    if not multiplier:
        return int(width)
    width = width * multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """``ceil(repeats * multiplier)`` (mmaction2 / PySlowFast ``_round_repeats``)."""
    if not multiplier:
        return repeats
    return math.ceil(multiplier * repeats)


class SEModule(nn.Module):
    """Squeeze-excitation: global mean -> ``fc1`` (1x1x1 conv, bias) -> ReLU -> ``fc2`` -> sigmoid -> scale.

    The squeeze is a mean over every dimension after channels, so the block also runs on images (4-D tensors)
    once :func:`vidprior.image_model` has turned ``fc1`` / ``fc2`` into 1x1 Conv2d.
    """

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        self.bottleneck = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, self.bottleneck, kernel_size=1, padding=0)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv3d(self.bottleneck, channels, kernel_size=1, padding=0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)  # (B, C, T, H, W) -> (B, C, 1, 1, 1)
        s = self.sigmoid(self.fc2(self.relu(self.fc1(s))))  # -> (B, bottleneck, 1, 1, 1) -> (B, C, 1, 1, 1)
        return x * s  # broadcast over (T, H, W)


class BlockX3d(nn.Module):
    """X3D residual block (mmaction2 ``BlockX3D``): names ``conv1``, ``conv2``, ``conv3``, ``se_module``,
    ``downsample``."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        outplanes: int,
        *,
        spatial_stride: int = 1,
        downsample: nn.Module | None = None,
        se_ratio: float | None = None,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = ConvModule(inplanes, planes, 1)
        # channel-wise 3x3x3; the paper's STS layer
        self.conv2 = ConvModule(planes, planes, 3, (1, spatial_stride, spatial_stride), 1, groups=planes, act=None)
        self.swish = nn.SiLU()
        self.conv3 = ConvModule(planes, outplanes, 1, act=None)
        self.se_module = SEModule(planes, se_ratio) if se_ratio is not None else None
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm3d:
        return self.conv3.bn

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))  # (B, C_in, T, H, W) -> (B, planes, T, H', W'), stride on conv2
        if self.se_module is not None:
            out = self.se_module(out)
        out = self.conv3(self.swish(out))  # -> (B, C_out, T, H', W')
        identity = x if self.downsample is None else self.downsample(x)  # (B, C_out, T, H', W')
        return self.relu(out + identity)


class X3d(nn.Module):
    """X3D backbone (mmaction2 0.x ``X3D``): ``conv1_s``, ``conv1_t``, ``layer1``..``layer4``, ``conv5``.

    Args:
        gamma_w, gamma_b, gamma_d: width, bottleneck and depth expansion factors.
        base_channels: stem width before ``gamma_w`` (24 in X3D).
        stage_blocks: blocks per stage; ``None``: ``ceil(gamma_d * (1, 2, 5, 3))``.
        spatial_strides: spatial stride of the first block of every stage.
        se_ratio: squeeze-excitation reduction on even-indexed blocks (``None``: no SE).
    """

    def __init__(
        self,
        *,
        gamma_w: float = 1.0,
        gamma_b: float = 2.25,
        gamma_d: float = 2.2,
        base_channels: int = 24,
        stage_blocks: Sequence[int] | None = None,
        spatial_strides: Sequence[int] = (2, 2, 2, 2),
        se_ratio: float | None = 1 / 16,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        base = round_width(base_channels, gamma_w)
        if stage_blocks is None:
            stage_blocks = [round_repeats(n, gamma_d) for n in _BASE_STAGE_BLOCKS]
        if len(stage_blocks) != len(spatial_strides) or not all(n >= 1 for n in stage_blocks):
            raise ValueError(f"stage_blocks={tuple(stage_blocks)}: expected {len(spatial_strides)} counts >= 1")
        self.stage_blocks = tuple(stage_blocks)
        self.conv1_s = ConvModule(in_channels, base, (1, 3, 3), (1, 2, 2), (0, 1, 1), norm=False, act=None)
        self.conv1_t = ConvModule(base, base, (5, 1, 1), 1, (2, 0, 0), groups=base)
        self.res_layers: list[str] = []
        layer_inplanes = base
        for i, (blocks, stride) in enumerate(zip(stage_blocks, spatial_strides)):
            inplanes = base * 2**i
            planes = int(inplanes * gamma_b)
            downsample = None
            if stride != 1 or layer_inplanes != inplanes:
                downsample = ConvModule(layer_inplanes, inplanes, 1, (1, stride, stride), act=None)
            layers = []
            for j in range(blocks):
                layers.append(
                    BlockX3d(
                        layer_inplanes if j == 0 else inplanes,
                        planes,
                        inplanes,
                        spatial_stride=stride if j == 0 else 1,
                        downsample=downsample if j == 0 else None,
                        se_ratio=se_ratio if j % 2 == 0 else None,
                    )
                )
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.res_layers.append(name)
            layer_inplanes = inplanes
        self.conv5 = ConvModule(layer_inplanes, int(layer_inplanes * gamma_b), 1)
        self.out_channels = int(layer_inplanes * gamma_b)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1_t(self.conv1_s(x))  # (B, 3, T, H, W) -> (B, C, T, H/2, W/2)
        for name in self.res_layers:
            x = getattr(self, name)(x)  # each stage halves H, W; widths C, 2C, 4C, 8C
        return self.conv5(x)  # (B, 8C, T, H/32, W/32) -> (B, gamma_b * 8C, T, H/32, W/32)


class X3DHead(ClsHead):
    """mmaction2's ``X3DHead``: global average pool -> ``fc1`` (no bias) -> ReLU -> dropout -> ``fc2``.

    ``fc2`` is the classifier (``fc_cls`` is an alias for it, so :class:`VideoClassifier` sees it); the pre-logits
    features are the ``mid_features`` (2048) outputs of ``fc1`` after ReLU and dropout. ``reset`` replaces ``fc2``
    only; ``reset(0)`` makes ``forward`` return the pre-logits.
    """

    classifier = "fc2"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        mid_features: int = 2048,
        dropout: float = 0.5,
        init_std: float = 0.01,
    ) -> None:
        self.mid_features = mid_features  # read by ClsHead.__init__ to size the classifier
        super().__init__(in_features, num_classes, dropout=dropout, init_std=init_std)

    def _build_neck(self) -> None:
        self.fc1 = nn.Linear(self.in_features, self.mid_features, bias=False)
        nn.init.normal_(self.fc1.weight, std=self.init_std)
        self.relu = nn.ReLU()

    @property
    def pre_logits_features(self) -> int:
        return self.mid_features

    @property
    def fc_cls(self) -> nn.Module:  # type: ignore[override]
        return self.fc2

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.relu(self.fc1(self.pooled(x))))  # (B, C) -> (B, mid_features)
        return x if pre_logits else self.fc2(x)


@dataclass(frozen=True)
class X3dVariant:
    """One member of the family, as data: its expansion factors and the clip it is fed."""

    gamma_w: float
    gamma_d: float
    default_clip: tuple[int, int]  # (frames, interval) on Kinetics


X3D_VARIANTS: dict[str, X3dVariant] = {
    "x3d_xs": X3dVariant(gamma_w=1.0, gamma_d=2.2, default_clip=(4, 12)),
    "x3d_s": X3dVariant(gamma_w=1.0, gamma_d=2.2, default_clip=(13, 6)),
    "x3d_m": X3dVariant(gamma_w=1.0, gamma_d=2.2, default_clip=(16, 5)),
    "x3d_l": X3dVariant(gamma_w=1.0, gamma_d=5.0, default_clip=(16, 5)),
}


def x3d(
    variant: str,
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 24,
    stage_blocks: Sequence[int] | None = None,
    gamma_b: float = 2.25,
) -> VideoClassifier:
    """The family's one builder: ``variant`` from :data:`X3D_VARIANTS` with width, depth and bottleneck overrides.
    STS placement (paper): the depthwise conv2 of every block."""
    v = X3D_VARIANTS[variant]
    backbone = X3d(
        gamma_w=v.gamma_w,
        gamma_b=gamma_b,
        gamma_d=v.gamma_d,
        base_channels=base_channels,
        stage_blocks=None if stage_blocks is None else tuple(stage_blocks),
    )
    blocks = [m for m in backbone.modules() if isinstance(m, BlockX3d)]
    # mmaction2's X3D default zero_init_residual=True: the last BN of every block starts at 0
    init_weights(backbone, zero_init_residual=[b.last_bn for b in blocks])
    sts = [
        f"backbone.{layer}.{j}.conv2.conv"
        for layer in backbone.res_layers
        for j in range(len(getattr(backbone, layer)))
    ]
    head = X3DHead(backbone.out_channels, num_classes, dropout=dropout)
    return VideoClassifier(backbone, head, default_clip=v.default_clip, sts_layers=sts)


@register_model
def x3d_xs(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 24,
    stage_blocks: tuple[int, ...] | None = None,
    gamma_b: float = 2.25,
) -> VideoClassifier:
    """X3D-XS: the X3D-S network (gamma_w 1, gamma_b 2.25, gamma_d 2.2) fed 4 frames x interval 12 at 160 px."""
    return x3d(
        "x3d_xs",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        gamma_b=gamma_b,
    )


@register_model
def x3d_s(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 24,
    stage_blocks: tuple[int, ...] | None = None,
    gamma_b: float = 2.25,
) -> VideoClassifier:
    """X3D-S (gamma_w 1, gamma_b 2.25, gamma_d 2.2; blocks 3/5/11/7), 13 frames x interval 6 at 160 px (the paper's
    X3D). STS (paper): the 26 depthwise conv2."""
    return x3d(
        "x3d_s",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        gamma_b=gamma_b,
    )


@register_model
def x3d_m(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 24,
    stage_blocks: tuple[int, ...] | None = None,
    gamma_b: float = 2.25,
) -> VideoClassifier:
    """X3D-M: the X3D-S network fed 16 frames x interval 5 at 224 px."""
    return x3d(
        "x3d_m",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        gamma_b=gamma_b,
    )


@register_model
def x3d_l(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 24,
    stage_blocks: tuple[int, ...] | None = None,
    gamma_b: float = 2.25,
) -> VideoClassifier:
    """X3D-L (gamma_d 5: blocks 5/10/25/15), 16 frames x interval 5 at 312 px."""
    return x3d(
        "x3d_l",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        gamma_b=gamma_b,
    )


@register_model
def x3d_tiny(*, num_classes: int = 400, dropout: float = 0.5) -> VideoClassifier:
    """Width 8, one block per stage X3D-S: for tests and the quickstart."""
    return x3d_s(num_classes=num_classes, dropout=dropout, base_channels=8, stage_blocks=(1, 1, 1, 1))


__all__ = [
    "X3D_VARIANTS",
    "BlockX3d",
    "SEModule",
    "X3DHead",
    "X3d",
    "X3dVariant",
    "round_repeats",
    "round_width",
    "x3d",
    "x3d_l",
    "x3d_m",
    "x3d_s",
    "x3d_xs",
]
