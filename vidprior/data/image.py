"""Image pre-training transforms, from timm (paper §4 "Training"; docs/method.md, "Image pre-training").

:func:`image_train_transform` / :func:`image_eval_transform`: ``timm.data.create_transform`` (PIL image in,
(3, H, W) float out, ImageNet mean/std). The 3D model sees an image as a T = 1 clip: the model adds the time axis.
Mixup and repeated augmentation for image pre-training are the engine's (:class:`vidprior.data.mixup.VideoMixup`
works on images too; the engine's sampler repeats indices).

timm's transforms draw from Python's ``random`` and numpy's global RNG, not torch's.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import posterize as timm_posterize

from vidprior.errors import VidpriorError

__all__ = ["image_eval_transform", "image_train_transform"]


def image_train_transform(
    *,
    img_size: int = 224,
    auto_augment: str | None = "rand-m7-mstd0.5-inc1",
    interpolation: str = "bicubic",
    re_prob: float = 0.0,
    hflip: float = 0.5,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    color_jitter: float = 0.0,
) -> Any:
    """ImageNet training transform of the A2 recipe (docs/method.md, "Image pre-training"): RandomResizedCrop
    (bicubic, area 0.08-1, aspect 3/4-4/3) -> flip 0.5 -> RandAugment ``rand-m7-mstd0.5-inc1`` -> tensor ->
    normalise; no colour jitter (timm turns it off anyway when RandAugment is on), no random erasing.
    PIL image -> (3, H, W) float."""
    transform = create_transform(
        img_size,
        is_training=True,
        scale=tuple(scale),
        ratio=tuple(ratio),
        hflip=hflip,
        color_jitter=color_jitter or None,  # 0 -> no ColorJitter(0, 0, 0) no-op in the pipeline
        auto_augment=auto_augment or None,
        interpolation=interpolation,
        re_prob=re_prob,
    )
    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []):  # timm's RandAugment / AutoAugment ops
            if op.aug_fn is timm_posterize:
                op.aug_fn = _posterize
    return transform


def _posterize(img: Image.Image, bits_to_keep: int, **kwargs: Any) -> Image.Image:
    """timm's posterize, with 0 bits allowed. timm's increasing posterize ("-inc1", the recipes' RandAugment) keeps
    ``4 - int(4 * m / 10)`` bits, 0 at magnitude 10 (a magnitude of 9 with std 0.5 reaches 10 about once in 40
    draws): "keep no bit", a black image, as in the TensorFlow implementation timm follows. Pillow refuses 0 bits
    with a ValueError, which stopped image pre-training; here 0 bits gives the black image."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)  # every bit cleared: zeros
    return timm_posterize(img, bits_to_keep, **kwargs)


def image_eval_transform(*, img_size: int = 224, crop_pct: float = 0.95, interpolation: str = "bicubic") -> Any:
    """ImageNet evaluation: resize the short side to ``floor(img_size / crop_pct)`` (235 for 224 at 0.95), centre
    crop ``img_size``, normalise (docs/method.md, "Image pre-training"). PIL image -> (3, H, W) float."""
    if not 0 < crop_pct <= 1:
        raise VidpriorError(f"crop_pct={crop_pct}: expected a value in (0, 1]")
    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation)
