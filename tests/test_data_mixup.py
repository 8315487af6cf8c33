"""Video Mixup / CutMix: one box on every frame, pasted area == label weight, and why timm's Mixup needs a reshape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.data import Mixup

from vidprior.data.mixup import VideoMixup, cutmix_box, soft_targets
from vidprior.errors import VidpriorError

C, T, H, W = 3, 4, 12, 16


def _constant_clips(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip i is constant i (so every pixel tells which clip it came from); label i."""
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, C, T, H, W).clone()
    return x, torch.arange(b)


def _pasted_fraction(mixed: torch.Tensor, i: int, partner: int) -> torch.Tensor:
    """Per frame, the fraction of pixels of clip i that came from ``partner``: (C, T)."""
    return (mixed[i] == partner).float().mean(dim=(-2, -1))


@pytest.mark.parametrize("batch", [2, 5, 8])
def test_cutmix_pasted_area_equals_label_weight_on_every_frame(batch):
    mix = VideoMixup(num_classes=batch, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    x, y = _constant_clips(batch)
    for _ in range(200):
        mixed, target = mix(x, y)
        assert torch.equal(x, _constant_clips(batch)[0])  # the input is not modified in place
        for i in range(batch):
            j = batch - 1 - i
            if i == j:  # the middle clip of an odd batch is paired with itself: unchanged, own label
                assert torch.equal(mixed[i], x[i]) and target[i, i] == 1.0
                continue
            frac = _pasted_fraction(mixed, i, j)
            weight = target[i, j].item()
            # every channel of every frame has exactly the label weight pasted from the partner...
            assert torch.all((frac - weight).abs() < 1e-6), (frac, weight)
            assert target[i, i].item() == pytest.approx(1 - weight, abs=1e-6)
            # ...as an integer pixel count, and the same box on every frame
            assert round(weight * H * W) == int((mixed[i, 0, 0] == j).sum())
            masks = mixed[i] == j
            assert torch.equal(masks, masks[:1, :1].expand_as(masks))
            # the rest of the clip is its own
            assert torch.equal(mixed[i][~masks], x[i][~masks])


def test_mixup_blends_every_frame_with_the_same_lambda():
    b = 6
    mix = VideoMixup(num_classes=b, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)
    # clip i, frame t holds (i + 1) * (t + 1): a per-frame lambda would show up as different ratios per frame
    x = (torch.arange(b).view(b, 1, 1, 1, 1) + 1.0) * (torch.arange(T).view(1, 1, T, 1, 1) + 1.0)
    x = x.expand(b, C, T, H, W).clone()
    y = torch.arange(b)
    for _ in range(50):
        mixed, target = mix(x, y)
        for i in range(b):
            j = b - 1 - i
            per_frame = mixed[i] / (torch.arange(T).view(1, T, 1, 1) + 1.0)  # lam * (i+1) + (1-lam) * (j+1)
            lam = (per_frame - (j + 1)) / ((i + 1) - (j + 1))
            torch.testing.assert_close(lam, torch.full_like(lam, target[i, i].item()), atol=1e-5, rtol=0)
            assert target[i, j].item() == pytest.approx(1 - target[i, i].item(), abs=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 7, 8])
def test_targets_sum_to_one_and_smoothing(batch):
    k, s = 10, 0.1
    mix = VideoMixup(num_classes=k, label_smoothing=s)
    x = torch.randn(batch, C, T, H, W)
    y = torch.randint(0, k, (batch,))
    for _ in range(20):
        mixed, target = mix(x, y)
        assert mixed.shape == x.shape and target.shape == (batch, k) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(1), torch.ones(batch))
        assert target.min() >= s / k - 1e-7  # smoothing keeps every class above s / K
    # no mixing (prob 0, or switched off): exactly the smoothed one-hot
    switched_off = VideoMixup(num_classes=k, label_smoothing=s)
    switched_off.enabled = False
    for off in (VideoMixup(num_classes=k, label_smoothing=s, prob=0.0), switched_off):
        mixed, target = off(x, y)
        assert torch.equal(mixed, x)
        expected = torch.full((batch, k), s / k)
        expected[torch.arange(batch), y] = 1 - s + s / k
        torch.testing.assert_close(target, expected)


def test_soft_targets_match_timm():
    from timm.data.mixup import mixup_target

    y = torch.tensor([3, 0, 7, 7, 1])
    for lam, s in [(1.0, 0.0), (0.3, 0.1), (0.77, 0.0)]:
        torch.testing.assert_close(soft_targets(y, 9, lam, s), mixup_target(y, 9, lam, s))


def test_switch_probability_and_both_modes_are_used():
    b = 4
    mix = VideoMixup(num_classes=b, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.0)
    x, y = _constant_clips(b)
    kinds = set()
    for _ in range(40):
        mixed, _ = mix(x, y)
        values = set(mixed[0].unique().tolist())
        kinds.add("cutmix" if values <= {0.0, 3.0} else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_pathway_lists_are_mixed_alike():
    b = 4
    mix = VideoMixup(num_classes=b, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    slow, y = _constant_clips(b)
    fast = slow.repeat(1, 1, 4, 1, 1)  # (B, C, 4T, H, W)
    for _ in range(20):
        (ms, mf), target = mix([slow, fast], y)
        assert torch.equal(ms[0, 0, 0] == 3, mf[0, 0, 0] == 3)  # same box on both pathways
        assert (ms[0, 0, 0] == 3).float().mean().item() == pytest.approx(target[0, 3].item(), abs=1e-6)


def test_deterministic_under_manual_seed():
    mix = VideoMixup(num_classes=5)
    x, y = torch.randn(4, C, T, H, W), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(7)
    a = mix(x, y)
    torch.manual_seed(7)
    b = mix(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_arguments():
    with pytest.raises(VidpriorError):
        VideoMixup(num_classes=5, mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(VidpriorError):
        VideoMixup(num_classes=5, prob=1.5)
    mix = VideoMixup(num_classes=5)
    with pytest.raises(VidpriorError, match="labels"):
        mix(torch.zeros(4, C, T, H, W), torch.tensor([0, 1, 2]))
    with pytest.raises(VidpriorError, match="integer"):
        mix(torch.zeros(2, C, T, H, W), torch.tensor([0.0, 1.0]))
    with pytest.raises(VidpriorError, match=r"\[0, 5\)"):
        mix(torch.zeros(2, C, T, H, W), torch.tensor([0, 5]))


def test_cutmix_box_is_timms_rand_bbox():
    # same formula as timm's rand_bbox + correct_lam: box of side sqrt(1 - lam) clipped at the border, lambda
    # recomputed from the clipped box
    clipped = 0
    for _ in range(200):
        lam = float(torch.rand(()))
        (y0, y1, x0, x1), lam2 = cutmix_box(H, W, lam)
        assert 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W
        full = (int(H * (1 - lam) ** 0.5), int(W * (1 - lam) ** 0.5))
        assert y1 - y0 <= full[0] and x1 - x0 <= full[1]
        clipped += (y1 - y0, x1 - x0) != full
        assert lam2 == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (H * W))
    assert clipped > 20  # clipping is common, so the correction matters


# --------------------------------------------------------------------------------------------------------------------
# timm's Mixup on a video batch: why vidprior does not call it directly


def _timm_cutmix(b: int) -> Mixup:
    return Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=b)


def test_timm_mixup_on_a_5d_batch_is_wrong():
    b = 4
    np.random.seed(0)
    wrong = 0
    for _ in range(20):
        x, y = _constant_clips(b)
        mixed, target = _timm_cutmix(b)(x, y)  # box drawn for (H, W), pasted on (T, H): x[:, :, y0:y1, x0:x1]
        frac = _pasted_fraction(mixed, 0, b - 1)
        if torch.any((frac - target[0, b - 1]).abs() > 1e-6):
            wrong += 1
    assert wrong > 10  # the pasted area is not the label weight on most draws


def test_timm_mixup_after_reshape_is_right():
    b = 4
    np.random.seed(0)
    for _ in range(20):
        x, y = _constant_clips(b)
        mixed, target = _timm_cutmix(b)(x.view(b, C * T, H, W), y)
        mixed = mixed.view(b, C, T, H, W)
        frac = _pasted_fraction(mixed, 0, b - 1)
        assert torch.all((frac - target[0, b - 1]).abs() < 1e-6)
