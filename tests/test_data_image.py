"""Image pre-training pieces: timm transforms and Mixup as in the A2 recipe, repeated-augmentation sampler."""

from __future__ import annotations

import collections

import pytest
import torch
from PIL import Image
from timm.data import Mixup
from timm.data.distributed_sampler import RepeatAugSampler as TimmRepeatAugSampler
from torchvision import transforms as tv1

from vidprior.data.image import (
    image_eval_transform,
    image_mixup,
    image_train_transform,
    repeat_aug_sampler,
)
from vidprior.errors import VidpriorError


def _pil(h: int, w: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())


def _names(t) -> list[str]:
    return [type(s).__name__ for s in t.transforms]


# --------------------------------------------------------------------------------------------------------------------
# transforms


def test_image_train_transform_is_the_a2_recipe():
    t = image_train_transform(img_size=32)
    assert _names(t) == [
        "RandomResizedCropAndInterpolation",
        "RandomHorizontalFlip",
        "RandAugment",
        "MaybeToTensor",
        "Normalize",
    ]  # no colour jitter, no random erasing
    rrc, flip, ra = t.transforms[:3]
    assert rrc.scale == (0.08, 1.0) and rrc.ratio == pytest.approx((3 / 4, 4 / 3))
    assert rrc.interpolation == tv1.InterpolationMode.BICUBIC
    assert flip.p == 0.5
    assert ra.num_layers == 2 and len(ra.ops) == 15
    assert all(op.magnitude == 7 and op.magnitude_std == 0.5 for op in ra.ops)
    assert {"PosterizeIncreasing", "SolarizeIncreasing"} <= {op.name for op in ra.ops}  # 'inc1'
    for seed in range(3):
        out = t(_pil(50, 70, seed))
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_image_train_transform_options():
    assert "RandomErasing" in _names(image_train_transform(img_size=32, re_prob=0.25))
    plain = image_train_transform(img_size=32, auto_augment=None, hflip=0.0)
    assert _names(plain) == ["RandomResizedCropAndInterpolation", "MaybeToTensor", "Normalize"]
    jitter = image_train_transform(img_size=32, auto_augment=None, color_jitter=0.4)
    assert any(isinstance(s, tv1.ColorJitter) for s in jitter.transforms)


def test_image_eval_transform_resizes_to_235_for_224():
    t = image_eval_transform()
    assert _names(t) == ["Resize", "CenterCrop", "MaybeToTensor", "Normalize"]
    assert t.transforms[0].size == 235 and t.transforms[0].interpolation == tv1.InterpolationMode.BICUBIC
    out = t(_pil(240, 320))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    with pytest.raises(VidpriorError):
        image_eval_transform(crop_pct=1.5)


# --------------------------------------------------------------------------------------------------------------------
# mixup


def test_image_mixup_recipes():
    a2 = image_mixup(num_classes=10)
    assert isinstance(a2, Mixup)
    assert (a2.mixup_alpha, a2.cutmix_alpha, a2.mix_prob, a2.switch_prob, a2.label_smoothing, a2.mode) == (
        0.1,
        1.0,
        1.0,
        0.5,
        0.0,
        "batch",
    )
    sgd = image_mixup(num_classes=10, recipe="sgd")
    assert sgd.label_smoothing == 0.1
    custom = image_mixup(num_classes=10, recipe="sgd", mixup_alpha=0.8, label_smoothing=0.0)
    assert (custom.mixup_alpha, custom.cutmix_alpha, custom.label_smoothing) == (0.8, 1.0, 0.0)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, target = a2(x, y)
    assert mixed.shape == (4, 3, 8, 8) and target.shape == (4, 10)
    torch.testing.assert_close(target.sum(1), torch.ones(4))
    with pytest.raises(VidpriorError):
        image_mixup(recipe="a1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------------
# repeated augmentation sampler


def _runs(seq: list[int]) -> list[tuple[int, int]]:
    """Run-length encoding: [(value, length), ...]."""
    out: list[tuple[int, int]] = []
    for v in seq:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def test_timm_sampler_needs_distributed_but_ours_does_not():
    assert not torch.distributed.is_initialized()
    with pytest.raises((RuntimeError, ValueError)):
        TimmRepeatAugSampler(range(10))
    s = repeat_aug_sampler(range(10))
    assert (s.num_replicas, s.rank) == (1, 0)


@pytest.mark.parametrize("n", [10, 100, 255, 512])
def test_epoch_length_is_unchanged(n):
    s = repeat_aug_sampler(range(n))
    indices = list(s)
    assert len(indices) == len(s) == n
    assert all(0 <= i < n for i in indices)


def test_selected_round_cuts_large_datasets_to_a_multiple():
    # timm's default (used by the official runs) keeps len // 256 * 256 samples per epoch
    assert len(list(repeat_aug_sampler(range(1000)))) == 768
    assert len(list(repeat_aug_sampler(range(1000), selected_round=0))) == 1000
    assert len(list(repeat_aug_sampler(range(1000), selected_round=0, num_replicas=3, rank=2))) == 334


@pytest.mark.parametrize("num_repeats", [2, 3])
def test_one_process_gets_consecutive_repeats(num_repeats):
    n = 50
    indices = list(repeat_aug_sampler(range(n), num_repeats=num_repeats))
    runs = _runs(indices)
    assert all(length == num_repeats for _, length in runs[:-1])  # the last run may be cut by the epoch length
    assert 1 <= runs[-1][1] <= num_repeats
    assert len({v for v, _ in runs}) == len(runs)  # each chosen index forms exactly one run
    counts = collections.Counter(indices)
    assert len(counts) == -(-n // num_repeats)  # about 1 / num_repeats of the samples per epoch


def test_ranks_share_out_the_repeats():
    n, repeats = 60, 3
    # as many ranks as repeats: every rank sees the same samples in the same order, one copy each
    per_rank = [list(repeat_aug_sampler(range(n), num_replicas=3, rank=r, selected_round=0)) for r in range(3)]
    assert per_rank[0] == per_rank[1] == per_rank[2]
    assert len(per_rank[0]) == n // 3 and len(set(per_rank[0])) == n // 3
    # two ranks: dealt round-robin from the repeated list, which has runs of num_repeats
    per_rank = [list(repeat_aug_sampler(range(n), num_replicas=2, rank=r, selected_round=0)) for r in range(2)]
    merged = [per_rank[k % 2][k // 2] for k in range(n)]
    assert all(length == repeats for _, length in _runs(merged))


def test_set_epoch_changes_the_order_deterministically():
    def order(epoch: int, seed: int = 0) -> list[int]:
        s = repeat_aug_sampler(range(40), seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0) == order(0) and order(5) == order(5)
    assert order(0) != order(1)
    assert order(1, seed=10) != order(1) and order(1, seed=10) == order(1, seed=10)
    # seed 0 is timm's own order, and iterating does not change the sampler's epoch
    timm = TimmRepeatAugSampler(range(40), num_replicas=1, rank=0)
    timm.set_epoch(3)
    s = repeat_aug_sampler(range(40), seed=7)
    s.set_epoch(3)
    list(s)
    assert s.epoch == 3
    assert order(3) == list(timm)


def test_no_shuffle_keeps_dataset_order():
    assert list(repeat_aug_sampler(range(9), shuffle=False)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_sampler_bad_arguments():
    with pytest.raises(VidpriorError):
        repeat_aug_sampler(range(10), num_replicas=2, rank=2)
    with pytest.raises(VidpriorError):
        repeat_aug_sampler(range(10), num_repeats=0)
    with pytest.raises(VidpriorError):
        repeat_aug_sampler([])
