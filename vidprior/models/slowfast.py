"""SlowFast-R50 (4x16 and 8x8), built from one clip as mmaction2 0.x ``ResNet3dSlowFast`` does.

The model takes one clip ``(B, 3, T, H, W)`` and samples its pathways itself: the slow pathway sees every
``tau``-th frame, the fast pathway every ``tau / alpha``-th (nearest-neighbour sampling, as mmaction2's
``interpolate(mode="nearest")``). Lateral connections (time-strided convs, no norm) run from fast to slow after the
stem and after res2-res4, concatenated to the slow stream. Parameter names follow mmaction2
(``backbone.slow_path.*``, ``backbone.fast_path.*``, ``backbone.slow_path.layer1_lateral.conv.weight``).

On an image (the 2D view from :func:`vidprior.image_model`) both pathways see the image and the laterals become
1x1 convs: the paper pre-trains both branches together (App. B.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vidprior.errors import VidpriorError
from vidprior.layers.conv_module import ConvModule
from vidprior.models._registry import register_model
from vidprior.models.base import ClsHead, VideoClassifier, init_weights
from vidprior.models.resnet3d import Bottleneck3d, ResNet3d


class SlowPathway(ResNet3d):
    """SlowFast's slow pathway: a :class:`ResNet3d` whose stages take the fast pathway's lateral features too.

    The first block of every stage gets ``2 * C / channel_ratio`` extra input channels (the lateral of a stage with
    ``C`` output channels), and the lateral convs ``conv1_lateral``, ``layer{i}_lateral`` are created on the fast
    pathway's channel counts and kept on this module, as mmaction2 names them.
    """

    def __init__(self, *, channel_ratio: int, speed_ratio: int, fusion_kernel: int, **resnet) -> None:
        self.channel_ratio, self.speed_ratio, self.fusion_kernel = channel_ratio, speed_ratio, fusion_kernel
        super().__init__(**resnet)

    def _stage_extra_in(self, inplanes: int) -> int:
        return inplanes * 2 // self.channel_ratio

    def _after(self, name: str, channels: int, *, last: bool) -> None:
        if last:
            return
        fast = channels // self.channel_ratio
        # time-strided conv from the fast pathway, no norm or activation (mmaction2 / SlowFast paper)
        lateral = ConvModule(
            fast,
            fast * 2,
            (self.fusion_kernel, 1, 1),
            (self.speed_ratio, 1, 1),
            ((self.fusion_kernel - 1) // 2, 0, 0),
            norm=False,
            act=None,
        )
        self.add_module(f"{name}_lateral", lateral)


class SlowFast(nn.Module):
    """Slow and fast ResNet3d pathways with lateral fusion. Returns ``(slow_features, fast_features)``."""

    def __init__(
        self,
        *,
        tau: int,
        alpha: int,
        beta_inv: int = 8,
        fusion_kernel: int,
        base_channels: int = 64,
        stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    ) -> None:
        super().__init__()
        if tau % alpha:
            raise ValueError(f"tau={tau} must be a multiple of alpha={alpha}")
        self.tau, self.alpha = tau, alpha
        self.slow_path = SlowPathway(
            base_channels=base_channels,
            stage_blocks=stage_blocks,
            inflate=(0, 0, 1, 1),
            conv1_kernel=(1, 7, 7),
            channel_ratio=beta_inv,
            speed_ratio=alpha,
            fusion_kernel=fusion_kernel,
        )
        self.fast_path = ResNet3d(
            base_channels=base_channels // beta_inv,
            stage_blocks=stage_blocks,
            inflate=(1, 1, 1, 1),
            conv1_kernel=(5, 7, 7),
        )
        self.out_channels = (self.slow_path.out_channels, self.fast_path.out_channels)

    @staticmethod
    def _sample(x: Tensor, step: int) -> Tensor:
        # every `step`-th frame, floor(T / step) of them (= mmaction2's nearest interpolation by 1/step).
        # A one-frame clip is an image: both pathways see it, as in the authors' image pre-training.
        t = x.shape[2]
        if t == 1:
            return x
        if t < step:
            raise VidpriorError(f"SlowFast needs at least {step} frames for this pathway, got a clip of {t}")
        return x[:, :, : (t // step) * step : step]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() == 5:  # (B, C, T, H, W); an image (2D view) feeds both pathways as is
            # slow (B, C, T/tau, H, W), fast (B, C, T*alpha/tau, H, W)
            x_slow, x_fast = self._sample(x, self.tau), self._sample(x, self.tau // self.alpha)
        else:
            x_slow = x_fast = x
        slow, fast = self.slow_path, self.fast_path
        x_slow, x_fast = slow.forward_stem(x_slow), fast.forward_stem(x_fast)  # (B, C_s | C_f, T_s | T_f, H/4, W/4)
        # lateral: fast (B, C_f, T_f, ...) -> (B, 2 C_f, T_s, ...) by a time-strided conv, appended to the slow stream
        x_slow = torch_cat(x_slow, slow.conv1_lateral(x_fast))
        for i, name in enumerate(slow.res_layers):
            x_slow = getattr(slow, name)(x_slow)  # each stage: 4x channels in layer1, then 2x; H, W halve after it
            x_fast = getattr(fast, name)(x_fast)
            if i != len(slow.res_layers) - 1:
                x_slow = torch_cat(x_slow, getattr(slow, f"{name}_lateral")(x_fast))
        return x_slow, x_fast  # (B, 32 C_s, T_s, H/32, W/32), (B, 32 C_f, T_f, H/32, W/32)


def torch_cat(a: Tensor, b: Tensor) -> Tensor:
    """Concatenate along channels: (B, Ca, ...) + (B, Cb, ...) -> (B, Ca + Cb, ...)."""
    return torch.cat((a, b), dim=1)


class SlowFastHead(ClsHead):
    """Pools each pathway and concatenates ``[fast, slow]`` (mmaction2's order) before ``fc_cls``."""

    def pooled(self, x: tuple[Tensor, Tensor]) -> Tensor:  # type: ignore[override]
        x_slow, x_fast = x
        return torch_cat(super().pooled(x_fast), super().pooled(x_slow))  # (B, C_fast + C_slow)


@dataclass(frozen=True)
class SlowFastVariant:
    """One member of the family, as data: how the pathways sample the clip and how the laterals fuse."""

    tau: int  # the slow pathway sees every tau-th frame
    alpha: int  # the fast pathway sees alpha times more frames
    fusion_kernel: int  # temporal kernel of the laterals


SLOWFAST_VARIANTS: dict[str, SlowFastVariant] = {
    "slowfast50_4x16": SlowFastVariant(tau=8, alpha=8, fusion_kernel=5),
    "slowfast50_8x8": SlowFastVariant(tau=4, alpha=4, fusion_kernel=7),
}


def slowfast(
    variant: str,
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: Sequence[int] = (3, 4, 6, 3),
) -> VideoClassifier:
    """The family's one builder: ``variant`` from :data:`SLOWFAST_VARIANTS` with width and depth overrides."""
    v = SLOWFAST_VARIANTS[variant]
    backbone = SlowFast(
        tau=v.tau,
        alpha=v.alpha,
        fusion_kernel=v.fusion_kernel,
        base_channels=base_channels,
        stage_blocks=tuple(stage_blocks),
    )
    blocks = [m for m in backbone.modules() if isinstance(m, Bottleneck3d)]
    init_weights(backbone, zero_init_residual=[b.last_bn for b in blocks])
    # STS (paper): conv1 of the slow path's inflated blocks (res4, res5) and of every fast block.
    sts = [
        f"backbone.{name}"
        for name, m in backbone.named_modules()
        if isinstance(m, nn.Conv3d) and m.kernel_size == (3, 1, 1) and name.endswith(".conv1.conv")
    ]
    head = SlowFastHead(sum(backbone.out_channels), num_classes, dropout=dropout)
    return VideoClassifier(backbone, head, default_clip=(32, 2), sts_layers=sts)


@register_model
def slowfast50_4x16(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
) -> VideoClassifier:
    """SlowFast-R50 4x16 (tau 8, alpha 8, fusion kernel 5): 32 input frames -> 4 slow, 32 fast."""
    return slowfast(
        "slowfast50_4x16",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
    )


@register_model
def slowfast50_8x8(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    base_channels: int = 64,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
) -> VideoClassifier:
    """SlowFast-R50 8x8 (tau 4, alpha 4, fusion kernel 7): 32 input frames -> 8 slow, 32 fast."""
    return slowfast(
        "slowfast50_8x8",
        num_classes=num_classes,
        dropout=dropout,
        base_channels=base_channels,
        stage_blocks=stage_blocks,
    )


@register_model
def slowfast_tiny(*, num_classes: int = 400, dropout: float = 0.5) -> VideoClassifier:
    """Quarter-width (slow 16, fast 2 channels), one block per stage SlowFast 4x16: for tests."""
    return slowfast50_4x16(num_classes=num_classes, dropout=dropout, base_channels=16, stage_blocks=(1, 1, 1, 1))
