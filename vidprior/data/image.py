"""Image pre-training data pieces, from timm as in the authors' code (official-code.md §4a, paper §4 "Training").

* :func:`image_train_transform` / :func:`image_eval_transform`: ``timm.data.create_transform`` (PIL image in,
  (3, H, W) float out, ImageNet mean/std). The 3D model sees an image as a T = 1 clip: the model/engine adds the time
  axis (official ``V3D.forward`` does ``x.unsqueeze(2)``, official-code.md §3).
* :func:`image_mixup`: ``timm.data.Mixup`` for the A2 recipe (300 epochs, BCE) or the paper's SGD recipe.
* :func:`repeat_aug_sampler`: timm's ``RepeatAugSampler`` (repeated augmentation x3), usable in one process.

timm's transforms and Mixup draw from Python's ``random`` and numpy's global RNG, not torch's.
"""

from __future__ import annotations

import math
from collections.abc import Sized
from typing import Any, Literal

import torch.distributed as dist
from timm.data import Mixup, create_transform
from timm.data.distributed_sampler import RepeatAugSampler as _TimmRepeatAugSampler

from vidprior.errors import VidpriorError

__all__ = ["RepeatAugSampler", "image_eval_transform", "image_mixup", "image_train_transform", "repeat_aug_sampler"]


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
    """ImageNet training transform of the A2 recipe (official-code.md §4a): RandomResizedCrop (bicubic, area
    0.08-1, aspect 3/4-4/3) -> flip 0.5 -> RandAugment ``rand-m7-mstd0.5-inc1`` -> tensor -> normalise; no colour
    jitter (timm turns it off anyway when RandAugment is on), no random erasing. PIL image -> (3, H, W) float."""
    return create_transform(
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


def image_eval_transform(*, img_size: int = 224, crop_pct: float = 0.95, interpolation: str = "bicubic") -> Any:
    """ImageNet evaluation: resize the short side to ``floor(img_size / crop_pct)`` (235 for 224 at 0.95), centre
    crop ``img_size``, normalise (official-code.md §4a). PIL image -> (3, H, W) float."""
    if not 0 < crop_pct <= 1:
        raise VidpriorError(f"crop_pct={crop_pct}: expected a value in (0, 1]")
    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation)


# recipe -> timm Mixup settings. "a2": the authors' scripts (official-code.md §4a: mixup 0.1, cutmix 1.0, prob 1,
# switch 0.5, batch mode, BCE loss without smoothing). "sgd": the paper's 100/150-epoch recipe (§4 "Training": SGD,
# RandAugment + Mixup + CutMix, label smoothing); it names no alphas, so A2's are kept (an assumption) and label
# smoothing is 0.1.
_MIXUP_RECIPES: dict[str, dict[str, float]] = {
    "a2": {"mixup_alpha": 0.1, "cutmix_alpha": 1.0, "label_smoothing": 0.0},
    "sgd": {"mixup_alpha": 0.1, "cutmix_alpha": 1.0, "label_smoothing": 0.1},
}


def image_mixup(
    *,
    num_classes: int = 1000,
    recipe: Literal["a2", "sgd"] = "a2",
    mixup_alpha: float | None = None,
    cutmix_alpha: float | None = None,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float | None = None,
) -> Mixup:
    """``timm.data.Mixup`` (batch mode) configured like the paper; ``None`` arguments take the recipe's value.

    timm's Mixup needs an even batch size (use ``drop_last=True``) and 4-D images; for video batches use
    :class:`vidprior.data.mixup.VideoMixup`.
    """
    if recipe not in _MIXUP_RECIPES:
        raise VidpriorError(f"recipe={recipe!r}: expected one of {sorted(_MIXUP_RECIPES)}")
    cfg = dict(_MIXUP_RECIPES[recipe])
    for key, val in (
        ("mixup_alpha", mixup_alpha),
        ("cutmix_alpha", cutmix_alpha),
        ("label_smoothing", label_smoothing),
    ):
        if val is not None:
            cfg[key] = float(val)
    return Mixup(
        mixup_alpha=cfg["mixup_alpha"],
        cutmix_alpha=cfg["cutmix_alpha"],
        prob=prob,
        switch_prob=switch_prob,
        mode="batch",
        label_smoothing=cfg["label_smoothing"],
        num_classes=num_classes,
    )


class RepeatAugSampler(_TimmRepeatAugSampler):
    """timm's ``RepeatAugSampler`` with a ``seed``: the order of epoch ``e`` is seeded with ``seed + e`` (timm seeds
    with ``e`` alone, i.e. ``seed=0`` is timm's order)."""

    def __init__(self, dataset: Sized, *, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.seed = int(seed)

    def __iter__(self):  # type: ignore[override]
        epoch = self.epoch
        self.epoch = self.seed + epoch  # timm's __iter__ seeds its generator with self.epoch
        try:
            return super().__iter__()  # builds the whole index list before returning
        finally:
            self.epoch = epoch


def repeat_aug_sampler(
    dataset: Sized,
    *,
    num_repeats: int | float = 3,
    num_replicas: int | None = None,
    rank: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    selected_round: int = 256,
) -> RepeatAugSampler:
    """Repeated augmentation (official-code.md §4a: x3, epoch length unchanged) via timm's ``RepeatAugSampler``.

    Each epoch shuffles the dataset (seeded with ``seed + epoch``, call ``set_epoch``), repeats every index
    ``num_repeats`` times in a row and deals the list round-robin to the ranks: with ``num_replicas == num_repeats``
    each rank sees every chosen sample once and the copies sit at the same position on different ranks; in one
    process the copies are consecutive. Every rank yields ``len(dataset) / num_replicas`` indices, so an epoch has the
    length of a plain one and covers about ``1 / num_repeats`` of the distinct samples. With ``selected_round``
    (timm's default 256, which the official runs used) a dataset of at least that size is cut to a multiple of it
    (ImageNet-1k: 1,281,024 of 1,281,167 per epoch); ``selected_round=0`` keeps exactly
    ``ceil(len(dataset) / num_replicas)``.

    ``num_replicas`` / ``rank`` default to the ``torch.distributed`` world when it is initialised, else to one
    process (1, 0): timm's class would call ``dist.get_world_size()`` and fail there.
    """
    distributed = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if distributed else 1
    if rank is None:
        rank = dist.get_rank() if distributed else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise VidpriorError(f"rank={rank}, num_replicas={num_replicas}: expected 0 <= rank < num_replicas")
    if not num_repeats > 0 or not math.isfinite(num_repeats):
        raise VidpriorError(f"num_repeats={num_repeats}: expected a positive number")
    if len(dataset) == 0:
        raise VidpriorError("repeat_aug_sampler: the dataset is empty")
    return RepeatAugSampler(
        dataset,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        shuffle=shuffle,
        num_repeats=num_repeats,
        selected_round=selected_round,
    )
