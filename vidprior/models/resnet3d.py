"""3D ResNets: SlowOnly-R50, the paper's ablation ResNet50-3x1x1 / ResNet50-3x3x3 (Table 5), and ir-CSN-50.

Architectures follow mmaction2 0.x (``ResNet3d``, ``ResNet3dSlowOnly``, ``ResNet3dCSN``) as the paper's authors ran
them (authors' configs), with parameter names identical to mmaction2's so their checkpoints load strictly:
``backbone.conv1.conv.weight``, ``backbone.layer3.0.conv1.bn.running_mean``, CSN ``backbone.layer1.0.conv2.0.conv``.
No temporal down-sampling anywhere, as in the paper. The pathways of SlowFast are built from the same blocks
(:mod:`vidprior.models.slowfast`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from torch import Tensor, nn

from vidprior.layers.conv_module import ConvModule
from vidprior.models._registry import register_model
from vidprior.models.base import ClsHead, VideoClassifier, init_weights

InflateStyle = Literal["3x1x1", "3x3x3"]


class Bottleneck3d(nn.Module):
    """1x1x1 -> spatial 3x3 -> 1x1x1 bottleneck with a temporal kernel where ``inflate`` says (mmaction2 naming).

    ``inflate_style="3x1x1"``: conv1 is (3,1,1) when inflated (SlowOnly res4/res5, SlowFast); conv2 is (1,3,3).
    ``inflate_style="3x3x3"``: conv2 is (3,3,3) when inflated; with ``depthwise`` it is channel-wise and wrapped in
    a Sequential (``conv2.0``) as mmaction2's CSN does (ir-CSN, the paper's ResNet50-3x3x3).
    The spatial stride sits on conv2 ("pytorch" style).
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        spatial_stride: int = 1,
        temporal_stride: int = 1,
        inflate: bool = True,
        inflate_style: InflateStyle = "3x1x1",
        depthwise: bool = False,
        downsample: nn.Module | None = None,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        k1, p1 = ((3, 1, 1), (1, 0, 0)) if inflate and inflate_style == "3x1x1" else ((1, 1, 1), (0, 0, 0))
        k2, p2 = ((3, 3, 3), (1, 1, 1)) if inflate and inflate_style == "3x3x3" else ((1, 3, 3), (0, 1, 1))
        self.conv1 = ConvModule(inplanes, planes, k1, 1, p1, bn_eps=bn_eps)
        stride2 = (temporal_stride, spatial_stride, spatial_stride)
        if depthwise:
            conv2 = ConvModule(planes, planes, k2, stride2, p2, groups=planes, bn_eps=bn_eps)
            self.conv2: nn.Module = nn.Sequential(conv2)
        else:
            self.conv2 = ConvModule(planes, planes, k2, stride2, p2, bn_eps=bn_eps)
        self.conv3 = ConvModule(planes, planes * self.expansion, 1, act=None, bn_eps=bn_eps)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm3d:
        return self.conv3.bn

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4 planes, T, H', W')
        # (B, C, T, H, W) -> conv1 (B, planes, ...) -> conv2 (spatial stride: H', W') -> conv3 (B, 4 planes, ...)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + identity)


class ResNet3d(nn.Module):
    """Stem (``conv1`` + ``maxpool``) and four stages ``layer1``..``layer4`` of :class:`Bottleneck3d`.

    Subclasses may widen the input of each stage and add modules after the stem and after each stage through
    :meth:`_stage_extra_in` and :meth:`_after` (SlowFast's slow pathway adds its laterals there, in
    :mod:`vidprior.models.slowfast`).
    """

    def __init__(
        self,
        *,
        base_channels: int = 64,
        stage_blocks: Sequence[int] = (3, 4, 6, 3),
        spatial_strides: Sequence[int] = (1, 2, 2, 2),
        inflate: Sequence[int] = (0, 0, 1, 1),
        inflate_style: InflateStyle = "3x1x1",
        depthwise: bool = False,
        conv1_kernel: tuple[int, int, int] = (1, 7, 7),
        bn_eps: float = 1e-5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(stage_blocks) != 4 or len(spatial_strides) != 4 or len(inflate) != 4:
            raise ValueError("stage_blocks, spatial_strides and inflate need one entry per stage (4)")
        pad1 = tuple((k - 1) // 2 for k in conv1_kernel)
        self.conv1 = ConvModule(in_channels, base_channels, conv1_kernel, (1, 2, 2), pad1, bn_eps=bn_eps)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self._after("conv1", base_channels, last=False)
        inplanes = base_channels
        self.res_layers: list[str] = []
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            layer = self._make_layer(
                inplanes + self._stage_extra_in(inplanes),
                planes,
                blocks,
                spatial_stride=spatial_strides[i],
                inflate=bool(inflate[i]),
                inflate_style=inflate_style,
                depthwise=depthwise,
                bn_eps=bn_eps,
            )
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.res_layers.append(name)
            inplanes = planes * Bottleneck3d.expansion
            self._after(name, inplanes, last=i == len(stage_blocks) - 1)
        self.out_channels = inplanes

    def _stage_extra_in(self, inplanes: int) -> int:
        """Extra input channels of a stage whose own input has ``inplanes`` channels (none in a plain ResNet)."""
        return 0

    def _after(self, name: str, channels: int, *, last: bool) -> None:
        """Called after the stem (``conv1``) and after each stage is created, with its output channels."""

    def _make_layer(self, inplanes: int, planes: int, blocks: int, **kw) -> nn.Sequential:
        out = planes * Bottleneck3d.expansion
        stride = kw.pop("spatial_stride")
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = ConvModule(inplanes, out, 1, (1, stride, stride), act=None, bn_eps=kw["bn_eps"])
        layers = [Bottleneck3d(inplanes, planes, spatial_stride=stride, downsample=downsample, **kw)]
        layers += [Bottleneck3d(out, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.conv1(x))  # (B, 3, T, H, W) -> (B, C, T, H/4, W/4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_stem(x)  # (B, C, T, H/4, W/4)
        for name in self.res_layers:
            x = getattr(self, name)(x)  # layer1: (B, 4C, T, H/4, W/4); layer2..4 halve H, W and double channels
        return x  # (B, 32C, T, H/32, W/32)


def _blocks(model: nn.Module) -> list[Bottleneck3d]:
    return [m for m in model.modules() if isinstance(m, Bottleneck3d)]


@dataclass(frozen=True)
class ResNet3dVariant:
    """One member of the family, as data: which convs have a temporal kernel and how the network is initialised."""

    inflate: tuple[int, int, int, int]  # per stage: 1 = temporal kernel in its blocks
    inflate_style: InflateStyle
    depthwise: bool  # channel-wise conv2 (ir-CSN)
    conv1_kernel: tuple[int, int, int]
    bn_eps: float
    zero_init_residual: bool  # default: last BN of every block at 0
    default_clip: tuple[int, int]  # (frames, interval) the paper's recipe feeds it on Kinetics


_CSN = ResNet3dVariant((1, 1, 1, 1), "3x3x3", True, (3, 7, 7), 1e-3, False, (32, 2))
RESNET3D_VARIANTS: dict[str, ResNet3dVariant] = {
    # SlowOnly-R50 8x8 (mmaction2 ResNet3dSlowOnly): 1x7x7 stem, 3x1x1 conv1 in res4/res5
    "slowonly50": ResNet3dVariant((0, 0, 1, 1), "3x1x1", False, (1, 7, 7), 1e-5, True, (8, 8)),
    # the paper's ResNet50-3x1x1 (Table 5) is the SlowOnly layout
    "resnet50_3x1x1": ResNet3dVariant((0, 0, 1, 1), "3x1x1", False, (1, 7, 7), 1e-5, True, (8, 8)),
    # ir-CSN-50 (mmaction2 ResNet3dCSN, bottleneck "ir"): BN eps 1e-3, no zero-init residual, temporal strides 1
    "csn50": _CSN,
    # the paper's ResNet50-3x3x3 (Table 5) is the authors' CSN-50, fed 8x8 clips in the ablations
    "resnet50_3x3x3": replace(_CSN, default_clip=(8, 8)),
}


def resnet3d(
    variant: str,
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: Sequence[int] = (3, 4, 6, 3),
    spatial_strides: Sequence[int] = (1, 2, 2, 2),
    zero_init_residual: bool | None = None,
) -> VideoClassifier:
    """The family's one builder: ``variant`` from :data:`RESNET3D_VARIANTS` with width, depth, per-stage stride and
    initialisation overrides (``zero_init_residual=None``: the variant's default). STS placement (paper): every
    temporal conv of the blocks (9 conv1 of res4/res5 in the 3x1x1 layout, the 16 depthwise conv2 in the 3x3x3
    layout)."""
    v = RESNET3D_VARIANTS[variant]
    backbone = ResNet3d(
        base_channels=base_channels,
        stage_blocks=tuple(stage_blocks),
        spatial_strides=tuple(spatial_strides),
        inflate=v.inflate,
        inflate_style=v.inflate_style,
        depthwise=v.depthwise,
        conv1_kernel=v.conv1_kernel,
        bn_eps=v.bn_eps,
    )
    zero_init = v.zero_init_residual if zero_init_residual is None else zero_init_residual
    init_weights(backbone, zero_init_residual=[b.last_bn for b in _blocks(backbone)] if zero_init else ())
    sts = []
    for name, m in backbone.named_modules():
        if isinstance(m, nn.Conv3d) and m.kernel_size[0] == 3 and ".conv" in name and name.startswith("layer"):
            sts.append(f"backbone.{name}")
    head = ClsHead(backbone.out_channels, num_classes, dropout=dropout)
    return VideoClassifier(backbone, head, default_clip=v.default_clip, sts_layers=sts)


@register_model
def slowonly50(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    zero_init_residual: bool = True,
) -> VideoClassifier:
    """SlowOnly-R50, 8 frames x interval 8: 1x7x7 stem, 3x1x1 conv1 in res4/res5. STS: the 9 conv1 of res4/res5."""
    return resnet3d(
        "slowonly50",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        zero_init_residual=zero_init_residual,
    )


@register_model
def resnet50_3x1x1(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    zero_init_residual: bool = True,
) -> VideoClassifier:
    """The paper's ResNet50-3x1x1 (Table 5): 1x7x7 stem, 3x1x1 conv1 in stages 3-4 (the SlowOnly layout)."""
    return resnet3d(
        "resnet50_3x1x1",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        zero_init_residual=zero_init_residual,
    )


@register_model
def resnet50_3x3x3(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    zero_init_residual: bool = False,
) -> VideoClassifier:
    """The paper's ResNet50-3x3x3 (Table 5): 3x7x7 stem, channel-wise 3x3x3 conv2 in every block. The authors ran
    ir-CSN-50 for it, so it is ``csn50`` (BN eps 1e-3, no zero-init residual) fed 8x8 clips."""
    return resnet3d(
        "resnet50_3x3x3",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        zero_init_residual=zero_init_residual,
    )


@register_model
def csn50(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    zero_init_residual: bool = False,
) -> VideoClassifier:
    """ir-CSN-50 (mmaction2 ``ResNet3dCSN``, bottleneck mode "ir"): 3x7x7 stem, depthwise 3x3x3 conv2, BN eps 1e-3,
    no zero-init residual, temporal strides 1 (as the authors changed them). STS (paper): the 16 depthwise conv2."""
    return resnet3d(
        "csn50",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        zero_init_residual=zero_init_residual,
    )


__all__ = [
    "RESNET3D_VARIANTS",
    "Bottleneck3d",
    "ResNet3d",
    "ResNet3dVariant",
    "csn50",
    "resnet3d",
    "resnet50_3x1x1",
    "resnet50_3x3x3",
    "slowonly50",
]
