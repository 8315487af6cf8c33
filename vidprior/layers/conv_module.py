"""Convolution -> batch norm -> activation, named like mmcv's ``ConvModule`` (``conv``, ``bn``).

The names follow mmaction2 0.x / mmcv 1.x on purpose: the authors fine-tuned with mmaction2 and their checkpoints
(``backbone.layer3.0.conv1.conv.weight``, ``...conv1.bn.running_mean``) then load into vidprior's models with no key
map. Works on 5-D (video) and, after :func:`vidprior.image_model`, on 4-D (image) tensors.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "swish": nn.SiLU,  # x * sigmoid(x), X3D's "Swish"
}

Size3 = int | tuple[int, int, int]


class ConvModule(nn.Module):
    """``conv`` (Conv3d), optional ``bn`` (BatchNorm3d), optional activation ``activate``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups, bias: as for ``nn.Conv3d``.
        norm: add a BatchNorm3d after the convolution.
        act: ``"relu"``, ``"swish"`` or ``None``.
        bn_eps: BatchNorm epsilon (CSN and R(2+1)D use 1e-3).
        conv: a module to use instead of building a Conv3d (R(2+1)D's factorised conv).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size3 = 1,
        stride: Size3 = 1,
        padding: Size3 = 0,
        *,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: str | None = "relu",
        bn_eps: float = 1e-5,
        conv: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if conv is None:
            conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.conv = conv
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps) if norm else None
        if act is not None and act not in _ACTS:
            raise ValueError(f"act={act!r}: expected one of {sorted(_ACTS)} or None")
        self.activate = _ACTS[act]() if act is not None else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x
