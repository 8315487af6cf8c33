"""Video transforms for fine-tuning and testing, on torchvision transforms v2.

Input: a ``tv_tensors.Video`` (or a plain tensor) of layout (T, C, H, W), dtype uint8, as the decoders return it.
Output: float32 (C, T, H, W) for the model (three-crop test views: (3, C, T, H, W)), normalised with the ImageNet
mean/std. That equals the fine-tuning configs' RGB mean [123.675, 116.28, 103.53] / std [58.395, 57.12, 57.375] on
0-255 values (docs/method.md, "Recipes"), which is also the image pre-training normalisation.

torchvision v2 draws the random parameters once per call and applies them to every frame of a ``Video`` (same crop,
flip and RandAugment ops on all frames). Only what torchvision lacks is hand-written here:

* :class:`RandomShortSideResize`: short-side jitter with an exact short side. ``v2.RandomShortestSize`` computes the
  new size as ``int(side * min_size / short)``, which lands one pixel short for many sizes (a short side of 19
  asked to become 106 becomes 105).
* :class:`ThreeCrop`: mmaction2's ``ThreeCrop`` (three square crops along the longer side) for the test protocol.
* :class:`RandAugmentMstd`: timm's per-op magnitude noise (``mstd``) around ``v2.RandAugment``.
* :class:`VideoToCTHW`: the one layout conversion (T, C, H, W) -> (C, T, H, W).

The paper's settings (crop and short-side sizes per model and data set) are the recipes' (docs/method.md,
"Recipes"); :func:`default_hflip` is the one place that decides whether a data set is flipped by default.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vidprior.errors import VidpriorError, closest

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # = (123.675, 116.28, 103.53) / 255
IMAGENET_STD = (0.229, 0.224, 0.225)  # = (58.395, 57.12, 57.375) / 255
# RandAugment's fill for geometric ops on uint8 frames: the mean colour, as timm (``img_mean`` in create_transform)
_FILL_UINT8 = [round(255 * m) for m in IMAGENET_MEAN]

#: Data sets (and data formats) whose labels name a left/right direction: a horizontal flip turns a clip into another
#: class. Names are compared lower-case without "-", "_" and spaces.
DIRECTIONAL_DATASETS = frozenset({"ssv2", "sthv2", "somethingsomethingv2", "ssv1", "sthv1", "jester"})


def _directional(name: str | None) -> bool:
    return name is not None and re.sub(r"[-_ ]", "", name.lower()) in DIRECTIONAL_DATASETS


def default_hflip(dataset: str | None) -> bool:
    """Whether training flips clips of this data set (or data format, e.g. ``"ssv2"``) horizontally by default: yes,
    unless its labels name a direction (Something-Something v1/v2, Jester), where the authors' SSv2 recipes do not
    flip (docs/method.md, "Recipes"). ``None``: yes."""
    return not _directional(dataset)


__all__ = [
    "DIRECTIONAL_DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RandAugmentMstd",
    "RandAugmentSpec",
    "RandomShortSideResize",
    "ThreeCrop",
    "VideoToCTHW",
    "default_hflip",
    "parse_randaugment",
    "video_eval_transform",
    "video_train_transform",
]


# --------------------------------------------------------------------------------------------------------------------
# Building blocks


class _CheckVideo(nn.Module):
    """Validate (T, C, H, W) uint8 and wrap a plain tensor as ``tv_tensors.Video``."""

    def forward(self, x: Any) -> tv_tensors.Video:
        if not isinstance(x, Tensor):
            raise VidpriorError(f"video transform: expected a (T, C, H, W) uint8 tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            hint = (
                " (it looks like (T, H, W, C): permute(0, 3, 1, 2) first)" if x.ndim == 4 and x.shape[-1] == 3 else ""
            )
            raise VidpriorError(f"video transform: expected shape (T, 3, H, W), got {tuple(x.shape)}{hint}")
        if x.dtype != torch.uint8:
            raise VidpriorError(f"video transform: expected uint8 frames (0-255, as decoded), got {x.dtype}")
        return x if isinstance(x, tv_tensors.Video) else tv_tensors.Video(x)


class RandomShortSideResize(nn.Module):
    """Resize so that the short side is a uniform random integer in ``[min_size, max_size]`` (both included).

    PySlowFast's ``TRAIN_JITTER_SCALES`` (uniform sampling); the aspect ratio is kept, the long side is
    ``int(short * long / short_in)`` as ``v2.Resize(int)`` computes it. One size per call: every frame gets it.
    """

    def __init__(self, min_size: int, max_size: int, *, interpolation: str = "bilinear", antialias: bool = True):
        super().__init__()
        if not 0 < min_size <= max_size:
            raise VidpriorError(f"short-side jitter ({min_size}, {max_size}): expected 0 < min <= max")
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.interpolation = v2.InterpolationMode(interpolation)
        self.antialias = antialias

    def forward(self, x: Tensor) -> Tensor:
        size = int(torch.randint(self.min_size, self.max_size + 1, ()))
        return F.resize(x, [size], interpolation=self.interpolation, antialias=self.antialias)

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}, max_size={self.max_size}, interpolation={self.interpolation.value}"


class ThreeCrop(nn.Module):
    """Three ``size`` x ``size`` crops along the longer side: left, centre, right (or top, centre, bottom).

    mmaction2's ``ThreeCrop`` (the paper's test protocol: short side 256, three 256 crops; docs/method.md,
    "Test protocol") generalised to crops smaller than the short side (centred on the short axis). Differences from
    mmaction2: the order is left/centre/right (mmaction2: left/right/centre; the views are averaged, so it does not
    matter) and the last crop ends exactly at the border (mmaction2 starts it at ``2 * ((W - size) // 2)``, one
    pixel short when ``W - size`` is odd). A square frame is cut along the width. Input (..., T, C, H, W); output
    (3, ..., T, C, size,
    size), a plain tensor.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def offsets(self, height: int, width: int) -> list[tuple[int, int]]:
        """(top, left) of the three crops for a frame of this size."""
        s = self.size
        if s > height or s > width:
            raise VidpriorError(f"ThreeCrop({s}): the frame is only {height}x{width}; resize its short side first")
        if width >= height:
            top = (height - s) // 2
            return [(top, 0), (top, (width - s) // 2), (top, width - s)]
        left = (width - s) // 2
        return [(0, left), ((height - s) // 2, left), (height - s, left)]

    def forward(self, x: Tensor) -> Tensor:
        x = x.as_subclass(Tensor)
        s = self.size
        return torch.stack([x[..., top : top + s, left : left + s] for top, left in self.offsets(*x.shape[-2:])])

    def extra_repr(self) -> str:
        return f"size={self.size}"


class VideoToCTHW(nn.Module):
    """(T, C, H, W) -> (C, T, H, W), and (N, T, C, H, W) -> (N, C, T, H, W); returns a plain contiguous tensor."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.as_subclass(Tensor)
        if x.ndim == 4:
            return x.permute(1, 0, 2, 3).contiguous()
        if x.ndim == 5:
            return x.permute(0, 2, 1, 3, 4).contiguous()
        raise VidpriorError(f"VideoToCTHW: expected 4 or 5 dims, got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------------------------------
# RandAugment strings


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed RandAugment string; ``magnitude`` and ``mstd`` are on timm's 0-10 scale."""

    num_ops: int = 2
    magnitude: float = 10.0  # timm's default when the string has no 'm'
    mstd: float = 0.0  # math.inf: uniform in [0, magnitude] (timm: mstd > 100)


def parse_randaugment(spec: str) -> RandAugmentSpec:
    """Parse ``"m9-n2-mstd0.5"`` or timm's ``"rand-m7-mstd0.5-inc1"``.

    What maps onto ``v2.RandAugment``:

    * ``n`` -> ``num_ops`` (default 2), ``m`` -> ``magnitude`` on timm's 0-10 scale (default 10, as timm): the builder
      uses 101 magnitude bins, so timm's ``m`` and torchvision's magnitudes coincide (rotate 30 deg, shear 0.3,
      translate 0.45 of the size, enhance factors 1 +- 0.9 at m=10).
    * ``mstd`` -> per-op Gaussian noise on the magnitude, clipped to [0, 10] (timm's behaviour; mstd > 100 means
      uniform in [0, m]), done by :class:`RandAugmentMstd`.
    * ``inc`` is accepted and has no effect: torchvision's Posterize and Solarize always grow in severity with the
      magnitude, i.e. they are timm's ``inc1`` ops.

    What does not map (documented, not emulated): torchvision applies each chosen op always and picks among 14 ops
    including Identity; timm applies each op with probability 0.5 (``p``) and picks among 15 ops (with Invert and
    SolarizeAdd, without Identity). Geometric ops fill with the mean colour, as timm. ``p``, ``mmax`` and ``t``
    sections are refused.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise VidpriorError(f"randaugment={spec!r}: expected a string like 'm9-n2-mstd0.5' or 'rand-m7-mstd0.5-inc1'")
    parts = spec.strip().lower().split("-")
    if parts[0] == "rand":
        parts = parts[1:]
    values: dict[str, float] = {}
    for part in parts:
        m = re.fullmatch(r"([a-z]+)(\d+(?:\.\d*)?|inf)", part)
        if m is None:
            raise VidpriorError(f"randaugment={spec!r}: cannot read section {part!r} (expected e.g. 'm9', 'n2')")
        key, val = m.group(1), float(m.group(2))
        if key in ("p", "mmax", "t"):
            raise VidpriorError(f"randaugment={spec!r}: section {part!r} has no torchvision v2 equivalent")
        if key not in ("m", "n", "mstd", "inc"):
            raise VidpriorError(f"randaugment={spec!r}: unknown section {part!r}{closest(key, ['m', 'n', 'mstd'])}")
        values[key] = val
    num_ops = values.get("n", 2.0)
    magnitude = values.get("m", 10.0)
    mstd = values.get("mstd", 0.0)
    if num_ops != int(num_ops) or num_ops < 1:
        raise VidpriorError(f"randaugment={spec!r}: n must be a positive integer")
    if not 0 <= magnitude <= 10:
        raise VidpriorError(f"randaugment={spec!r}: m must be in [0, 10] (timm's scale)")
    return RandAugmentSpec(num_ops=int(num_ops), magnitude=magnitude, mstd=math.inf if mstd > 100 else mstd)


_BINS = 101  # magnitude index = round(10 * timm magnitude)


class RandAugmentMstd(nn.Module):
    """``v2.RandAugment`` with timm's magnitude noise: every op draws its magnitude from N(m, mstd), clipped to
    [0, 10] (or U(0, m) when ``mstd`` is infinite). Same ops and same parameters on every frame of a video."""

    def __init__(
        self,
        num_ops: int,
        magnitude: float,
        mstd: float,
        *,
        interpolation: str = "bilinear",
        fill: list[int] | None = None,
    ):
        super().__init__()
        self.num_ops, self.magnitude, self.mstd = num_ops, magnitude, mstd
        self.op = v2.RandAugment(
            num_ops=1, magnitude=0, num_magnitude_bins=_BINS, interpolation=interpolation, fill=fill
        )

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.num_ops):
            if math.isinf(self.mstd):
                m = float(torch.rand(())) * self.magnitude
            else:
                m = self.magnitude + self.mstd * float(torch.randn(()))
            self.op.magnitude = round(min(max(m, 0.0), 10.0) * (_BINS - 1) / 10)
            x = self.op(x)
        return x

    def extra_repr(self) -> str:
        return f"num_ops={self.num_ops}, magnitude={self.magnitude}, mstd={self.mstd}"


def _randaugment(spec: str, interpolation: str) -> nn.Module:
    p = parse_randaugment(spec)
    if p.mstd == 0:
        return v2.RandAugment(
            num_ops=p.num_ops,
            magnitude=round(p.magnitude * (_BINS - 1) / 10),
            num_magnitude_bins=_BINS,
            interpolation=interpolation,
            fill=_FILL_UINT8,
        )
    return RandAugmentMstd(p.num_ops, p.magnitude, p.mstd, interpolation=interpolation, fill=_FILL_UINT8)


# --------------------------------------------------------------------------------------------------------------------
# Builders


def _positive_int(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise VidpriorError(f"{name}={v!r}: expected a positive integer")
    return v


def _pair(name: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (tuple, list)) or len(v) != 2 or not v[0] <= v[1]:
        raise VidpriorError(f"{name}={v!r}: expected a pair (low, high) with low <= high")
    return float(v[0]), float(v[1])


def _interp(v: str) -> str:
    try:
        return v2.InterpolationMode(v).value
    except ValueError:
        modes = [m.value for m in v2.InterpolationMode]
        raise VidpriorError(f"interpolation={v!r}: expected one of {modes}{closest(str(v), modes)}") from None


def _short_side_resize(short_side: Any, interpolation: str) -> list[nn.Module]:
    if short_side is None:
        return []
    if isinstance(short_side, int) and not isinstance(short_side, bool):
        return [v2.Resize(_positive_int("short_side", short_side), interpolation=interpolation, antialias=True)]
    if isinstance(short_side, (tuple, list)) and len(short_side) == 2:
        lo, hi = (_positive_int("short_side", s) for s in short_side)
        if lo == hi:
            return [v2.Resize(lo, interpolation=interpolation, antialias=True)]
        return [RandomShortSideResize(lo, hi, interpolation=interpolation)]
    raise VidpriorError(f"short_side={short_side!r}: expected an int, a (min, max) pair, or None")


def _normalise() -> list[nn.Module]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))]


def video_train_transform(
    *,
    crop_size: int = 224,
    short_side: int | tuple[int, int] | list[int] | None = (256, 320),
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool | None = None,
    randaugment: str | None = None,
    interpolation: str = "bilinear",
    dataset: str | None = None,
) -> v2.Compose:
    """Training augmentation: (T, C, H, W) uint8 -> (C, T, crop_size, crop_size) float, one set of parameters per clip.

    Steps: short-side resize (an int, or a uniform random size in a ``(min, max)`` pair, or ``None`` for none) ->
    ``RandomResizedCrop(crop_size, scale, ratio)`` -> horizontal flip p=0.5 -> optional RandAugment (see
    :func:`parse_randaugment`) -> float in [0, 1] -> ImageNet normalisation -> (C, T, H, W).

    Args:
        hflip: ``None`` (default): :func:`default_hflip` of ``dataset`` (on, except for data sets whose labels name
            a direction: ``dataset="ssv2"``, also ``"ssv1"``, ``"jester"``).
            ``True`` for such a dataset warns, because a flipped "pushing something from left to right" clip shows
            the opposite action under the original label.
        dataset: dataset name, only used for the flip default (``"k400"``, ``"ssv2"``/``"sthv2"``, ...).
    """
    crop_size = _positive_int("crop_size", crop_size)
    scale, ratio = _pair("scale", scale), _pair("ratio", ratio)
    interpolation = _interp(interpolation)
    if hflip is None:
        hflip = default_hflip(dataset)
    elif hflip and _directional(dataset):
        warnings.warn(
            f"horizontal flip is on for dataset {dataset!r}: its labels name a direction (e.g. 'pushing something "
            "from left to right'), so a flipped clip shows the opposite action under the original label and the "
            "training targets become wrong. The authors' SSv2 recipes do not flip; pass "
            "hflip=False or leave it None.",
            UserWarning,
            stacklevel=2,
        )
    steps: list[nn.Module] = [_CheckVideo(), *_short_side_resize(short_side, interpolation)]
    steps.append(v2.RandomResizedCrop(crop_size, scale=scale, ratio=ratio, interpolation=interpolation, antialias=True))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if randaugment:
        steps.append(_randaugment(randaugment, interpolation))
    return v2.Compose([*steps, *_normalise(), VideoToCTHW()])


def video_eval_transform(
    *,
    crop_size: int = 224,
    short_side: int | None = 256,
    crops: int = 1,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Validation / test: short-side resize, then a centre crop (``crops=1``, output (C, T, H, W)) or three crops
    along the longer side (``crops=3``, output (3, C, T, H, W), :class:`ThreeCrop`), normalised as in training."""
    crop_size = _positive_int("crop_size", crop_size)
    if crops not in (1, 3):
        raise VidpriorError(f"crops={crops!r}: expected 1 (centre crop) or 3 (three-crop)")
    if short_side is not None and crop_size > _positive_int("short_side", short_side):
        raise VidpriorError(f"crop_size={crop_size} is larger than short_side={short_side}")
    interpolation = _interp(interpolation)
    steps: list[nn.Module] = [_CheckVideo(), *_short_side_resize(short_side, interpolation)]
    if crops == 1:
        return v2.Compose([*steps, v2.CenterCrop(crop_size), *_normalise(), VideoToCTHW()])
    return v2.Compose([*steps, *_normalise(), ThreeCrop(crop_size), VideoToCTHW()])
