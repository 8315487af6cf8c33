"""R(2+1)D ResNets: R(2+1)D-34 as the paper ran it (mmaction2 0.x ``ResNet2Plus1d``) and torchvision's R(2+1)D-18.

Every 3D convolution is factorised (Tran et al., CVPR 2018) into a spatial ``conv_s`` ``(1, kh, kw)`` ``C_in -> M``,
``bn_s``, ReLU and a temporal ``conv_t`` ``(kt, 1, 1)`` ``M -> C_out`` (:class:`Conv2plus1d`, mmaction2's names), so
the paper's STS layers are the temporal ``conv_t`` of the stem and of both convs of every BasicBlock
(docs/method.md: 33 in R(2+1)D-34).

* ``r2plus1d34``: mmaction2 0.x ``ResNet2Plus1d`` with the authors' settings (authors' configs): BasicBlock
  [3, 4, 6, 3], stem ``(3, 7, 7)`` stride ``(1, 2, 2)`` + max pool ``(1, 3, 3)`` stride ``(1, 2, 2)``, spatial stride
  on each stage's first ``conv1``, 1x1x1 projections factorised too, **no temporal striding**, outer BN eps 1e-3.
  Keys as in mmaction2 (``backbone.layer2.0.conv1.conv.conv_s.weight``, ``backbone.conv1.bn.running_mean``), so the
  authors' checkpoints load with no key map.
* ``r2plus1d18``: the layout of ``torchvision.models.video.r2plus1d_18`` (stem ``M = 45``, no max pool, temporal
  stride 2 in the first block of stages 2-4, plain 1x1x1 projections, ``conv2`` of each block with ``conv1``'s
  middle width, BN eps 1e-5, 31,505,325 parameters with 400
  classes), with vidprior's mmaction-style names; ``tests/test_models_r2plus1d.py`` holds the key map from
  torchvision's names.

The forward code has no shape assumptions, so :func:`vidprior.image_model` (which turns every 3D layer into its 2D
counterpart) works on these models too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from vidprior.layers.conv_module import ConvModule
from vidprior.models._registry import register_model
from vidprior.models.base import ClsHead, VideoClassifier, init_weights

Size3 = tuple[int, int, int]

# mmaction2 builds ``bn_s`` inside ``Conv2plus1d`` with its default ``norm_cfg=dict(type='BN3d')``: mmcv's
# ConvModule passes only the conv arguments to the conv layer, so the config's ``eps=1e-3`` reaches the outer ``bn``
# of each ConvModule but not ``bn_s`` (the authors' ``Conv2plus1d_reshape`` has the same default). bn_s eps = 1e-5.
_MMACTION_BN_S_EPS = 1e-5


def _triple(v: int | Sequence[int]) -> Size3:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected an int or 3 ints, got {v!r}")
    return t  # type: ignore[return-value]


def mid_channels(in_channels: int, out_channels: int, kernel_size: int | Sequence[int]) -> int:
    """mmaction2's middle width ``int(3 * Cin * Cout * kh * kw / (Cin * kh * kw + 3 * Cout))``.

    The constant 3 (the temporal size the parameter budget is matched for) is used whatever ``kt`` is, so the stem
    gets 83 and 1x1x1 projections ``int(3 * Cin * Cout / (Cin + 3 * Cout))``; for 3x3x3 kernels it equals
    torchvision's ``midplanes``. Integer division equals the float formula's truncation for positive sizes.
    """
    _, kh, kw = _triple(kernel_size)
    return (3 * in_channels * out_channels * kh * kw) // (in_channels * kh * kw + 3 * out_channels)


class Conv2plus1d(nn.Module):
    """A factorised 3D convolution: ``conv_s`` (1, kh, kw) -> ``bn_s`` -> ReLU -> ``conv_t`` (kt, 1, 1).

    Spatial stride and padding go to ``conv_s``, temporal ones to ``conv_t``; no biases (a BN follows). Names as
    mmaction2's ``Conv2plus1d``. Wrap it in :class:`~vidprior.layers.conv_module.ConvModule` for the outer BN.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        *,
        mid: int | None = None,
        bn_eps: float = _MMACTION_BN_S_EPS,
    ) -> None:
        super().__init__()
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = _triple(kernel_size), _triple(stride), _triple(padding)
        if mid is None:
            mid = mid_channels(in_channels, out_channels, kernel_size)
        self.in_channels, self.out_channels, self.mid_channels = in_channels, out_channels, mid
        self.conv_s = nn.Conv3d(in_channels, mid, (1, kh, kw), (1, sh, sw), (0, ph, pw), bias=False)
        self.bn_s = nn.BatchNorm3d(mid, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.conv_t = nn.Conv3d(mid, out_channels, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # (B, C_in, T, H, W) -> spatial (1, k, k): (B, mid, T, H', W') -> temporal (k_t, 1, 1): (B, C_out, T', H', W')
        return self.conv_t(self.relu(self.bn_s(self.conv_s(x))))


class BasicBlock2plus1d(nn.Module):
    """Two factorised 3x3x3 convs (stride on ``conv1``) + identity or projection shortcut -> ReLU.

    mmaction2's ``BasicBlock3d`` with ``Conv2plus1d`` convs. ``shared_mid``: ``conv2`` takes ``conv1``'s middle
    width (from ``inplanes -> planes``) instead of its own (``planes -> planes``), as torchvision's ``BasicBlock``
    does; it differs only in the first block of a stage that widens.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        spatial_stride: int = 1,
        temporal_stride: int = 1,
        downsample: nn.Module | None = None,
        bn_eps: float = 1e-3,
        bn_s_eps: float = _MMACTION_BN_S_EPS,
        shared_mid: bool = False,
    ) -> None:
        super().__init__()
        stride = (temporal_stride, spatial_stride, spatial_stride)
        conv1 = Conv2plus1d(inplanes, planes, 3, stride, 1, bn_eps=bn_s_eps)
        conv2 = Conv2plus1d(planes, planes, 3, 1, 1, mid=conv1.mid_channels if shared_mid else None, bn_eps=bn_s_eps)
        self.conv1 = ConvModule(inplanes, planes, conv=conv1, bn_eps=bn_eps)
        self.conv2 = ConvModule(planes, planes, conv=conv2, act=None, bn_eps=bn_eps)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, planes, T', H', W')
        out = self.conv2(self.conv1(x))  # (B, inplanes, T, H, W) -> (B, planes, T', H', W'), strides on conv1
        return self.relu(out + identity)


class ResNet2Plus1d(nn.Module):
    """Stem ``conv1`` (factorised (3, 7, 7), stride (1, 2, 2)), optional ``maxpool``, stages ``layer1``..``layer4``.

    Args:
        base_channels: stem / first-stage width (stages double it).
        stage_blocks: BasicBlocks per stage.
        spatial_strides, temporal_strides: stride of the first block of each stage.
        stem_mid: middle width of the stem (``None``: mmaction2's formula, 83 for 3 -> 64; torchvision uses 45).
        stem_pool: max pool (1, 3, 3) stride (1, 2, 2) after the stem (mmaction2 yes, torchvision no).
        factorised_downsample: 1x1x1 projections as :class:`Conv2plus1d` (mmaction2) or a plain Conv3d
            (torchvision).
        bn_eps: epsilon of the BN after every conv; ``bn_s_eps``: of the BN inside every factorised conv.
        shared_mid: torchvision's block middle widths (see :class:`BasicBlock2plus1d`).
    """

    def __init__(
        self,
        *,
        base_channels: int = 64,
        stage_blocks: Sequence[int] = (3, 4, 6, 3),
        spatial_strides: Sequence[int] = (1, 2, 2, 2),
        temporal_strides: Sequence[int] = (1, 1, 1, 1),
        stem_mid: int | None = None,
        stem_pool: bool = True,
        factorised_downsample: bool = True,
        bn_eps: float = 1e-3,
        bn_s_eps: float = _MMACTION_BN_S_EPS,
        shared_mid: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not len(stage_blocks) == len(spatial_strides) == len(temporal_strides) == 4:
            raise ValueError("stage_blocks, spatial_strides and temporal_strides need one entry per stage (4)")
        stem = Conv2plus1d(in_channels, base_channels, (3, 7, 7), (1, 2, 2), (1, 3, 3), mid=stem_mid, bn_eps=bn_s_eps)
        self.conv1 = ConvModule(in_channels, base_channels, conv=stem, bn_eps=bn_eps)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if stem_pool else None
        inplanes = base_channels
        self.res_layers: list[str] = []
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            s, st = int(spatial_strides[i]), int(temporal_strides[i])
            downsample = None
            if s != 1 or st != 1 or inplanes != planes:
                if factorised_downsample:
                    conv = Conv2plus1d(inplanes, planes, 1, (st, s, s), 0, bn_eps=bn_s_eps)
                    downsample = ConvModule(inplanes, planes, conv=conv, act=None, bn_eps=bn_eps)
                else:
                    downsample = ConvModule(inplanes, planes, 1, (st, s, s), act=None, bn_eps=bn_eps)
            kw = dict(bn_eps=bn_eps, bn_s_eps=bn_s_eps, shared_mid=shared_mid)
            layers = [
                BasicBlock2plus1d(inplanes, planes, spatial_stride=s, temporal_stride=st, downsample=downsample, **kw)
            ]
            layers += [BasicBlock2plus1d(planes, planes, **kw) for _ in range(1, blocks)]
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.res_layers.append(name)
            inplanes = planes
        self.out_channels = inplanes

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # (B, 3, T, H, W) -> (B, C, T, H/2, W/2)
        if self.maxpool is not None:
            x = self.maxpool(x)  # -> (B, C, T, H/4, W/4)
        for name in self.res_layers:  # no pool2 in R(2+1)D (mmaction2)
            x = getattr(self, name)(x)  # stages 2-4 halve H, W (and T by temporal_strides), double channels
        return x  # (B, 8C, T', H/32, W/32) with the pool; H/16, W/16 without


def _sts_layers(backbone: ResNet2Plus1d) -> list[str]:
    """The paper's STS placement (docs/method.md): the temporal ``conv_t`` of the stem and of both convs of
    every BasicBlock (not the 1x1x1 projections, which have no temporal extent)."""
    names = ["backbone.conv1.conv.conv_t"]
    for layer in backbone.res_layers:
        for i in range(len(getattr(backbone, layer))):
            names += [f"backbone.{layer}.{i}.conv{j}.conv.conv_t" for j in (1, 2)]
    return names


@dataclass(frozen=True)
class R2Plus1dVariant:
    """One member of the family, as data (the depth and temporal strides are builder arguments)."""

    stem_mid: int | None  # middle width of the factorised stem at base width 64 (None: mmaction2's rule)
    stem_pool: bool
    factorised_downsample: bool
    bn_eps: float
    bn_s_eps: float  # BN between the spatial and the temporal conv of a (2+1)D conv
    shared_mid: bool  # each block's conv2 with conv1's middle width (torchvision)


R2PLUS1D_VARIANTS: dict[str, R2Plus1dVariant] = {
    "r2plus1d34": R2Plus1dVariant(None, True, True, 1e-3, _MMACTION_BN_S_EPS, False),
    "r2plus1d18": R2Plus1dVariant(45, False, False, 1e-5, 1e-5, True),
}


def r2plus1d(
    variant: str,
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: Sequence[int] = (3, 4, 6, 3),
    temporal_strides: Sequence[int] = (1, 1, 1, 1),
) -> VideoClassifier:
    """The family's one builder: ``variant`` from :data:`R2PLUS1D_VARIANTS` with width, depth and temporal strides."""
    v = R2PLUS1D_VARIANTS[variant]
    backbone = ResNet2Plus1d(
        base_channels=base_channels,
        stage_blocks=tuple(stage_blocks),
        temporal_strides=tuple(temporal_strides),
        stem_mid=None if v.stem_mid is None else max(1, v.stem_mid * base_channels // 64),
        stem_pool=v.stem_pool,
        factorised_downsample=v.factorised_downsample,
        bn_eps=v.bn_eps,
        bn_s_eps=v.bn_s_eps,
        shared_mid=v.shared_mid,
    )
    init_weights(backbone)  # no zero-init residual (the authors' config sets zero_init_residual=False)
    head = ClsHead(backbone.out_channels, num_classes, dropout=dropout)
    return VideoClassifier(backbone, head, default_clip=(8, 8), sts_layers=_sts_layers(backbone))


@register_model
def r2plus1d34(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    temporal_strides: tuple[int, ...] = (1, 1, 1, 1),
) -> VideoClassifier:
    """R(2+1)D-34 as the paper ran it (mmaction2 ``ResNet2Plus1d``, 8 frames x interval 8): factorised stem, max
    pool, BasicBlock [3, 4, 6, 3], factorised projections, no temporal striding (mmaction2's default would be
    ``(1, 2, 2, 2)``), BN eps 1e-3. STS (paper): the 33 temporal convs of the stem and the blocks."""
    return r2plus1d(
        "r2plus1d34",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        temporal_strides=temporal_strides,
    )


@register_model
def r2plus1d18(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (2, 2, 2, 2),
    temporal_strides: tuple[int, ...] = (1, 2, 2, 2),
) -> VideoClassifier:
    """torchvision's ``r2plus1d_18`` layout (31.5M parameters with 400 classes): stem ``(1, 7, 7)`` 3 -> 45 +
    ``(3, 1, 1)`` 45 -> 64, no max pool, temporal stride 2 with the spatial one in stages 2-4, plain 1x1x1
    projections, each block's ``conv2`` with ``conv1``'s middle width, BN eps 1e-5. vidprior's names and head
    (dropout before ``fc_cls``; torchvision has none; the test suite maps torchvision's keys). STS: the 17
    temporal convs of the stem and the blocks (the first ``conv_t`` of stages 2-4 with temporal stride 2)."""
    return r2plus1d(
        "r2plus1d18",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
        temporal_strides=temporal_strides,
    )


@register_model
def r2plus1d_tiny(*, num_classes: int = 400, dropout: float = 0.5) -> VideoClassifier:
    """Quarter-width (16), one block per stage R(2+1)D-34 layout: for tests and the quickstart."""
    return r2plus1d34(num_classes=num_classes, dropout=dropout, base_channels=16, stage_blocks=(1, 1, 1, 1))


__all__ = [
    "R2PLUS1D_VARIANTS",
    "BasicBlock2plus1d",
    "Conv2plus1d",
    "R2Plus1dVariant",
    "ResNet2Plus1d",
    "mid_channels",
    "r2plus1d",
    "r2plus1d18",
    "r2plus1d34",
]
