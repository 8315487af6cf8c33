"""Video transforms: one set of random parameters per clip, model layout, normalisation, three-crop, flip policy."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from vidprior.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandAugmentMstd,
    RandomShortSideResize,
    ThreeCrop,
    default_hflip,
    parse_randaugment,
    video_eval_transform,
    video_train_transform,
)
from vidprior.errors import VidpriorError

T, H, W = 4, 40, 56
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)


def _video(frames: torch.Tensor) -> tv_tensors.Video:
    return tv_tensors.Video(frames.to(torch.uint8))


def _random_video(t: int = T, h: int = H, w: int = W, seed: int = 1) -> tv_tensors.Video:
    g = torch.Generator().manual_seed(seed)
    return _video(torch.randint(0, 256, (t, 3, h, w), generator=g))


def _to_255(x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation of a (C, T, H, W) output: back to 0-255 values."""
    return (x * STD + MEAN) * 255


def _red_255(x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation of red-channel values."""
    return (x * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255


def _steps(t: v2.Compose) -> list:
    return list(t.transforms)


# --------------------------------------------------------------------------------------------------------------------
# layout, dtype, normalisation


@pytest.mark.parametrize("randaugment", [None, "m9-n2", "m9-n2-mstd0.5", "rand-m7-mstd0.5-inc1"])
def test_train_output_layout(randaugment):
    t = video_train_transform(crop_size=32, short_side=(40, 48), randaugment=randaugment)
    out = t(_random_video())
    assert type(out) is torch.Tensor  # a plain tensor, not a tv_tensors.Video
    assert out.shape == (3, T, 32, 32) and out.dtype == torch.float32 and out.is_contiguous()


def test_eval_output_layout():
    assert video_eval_transform(crop_size=32, short_side=40, crops=1)(_random_video()).shape == (3, T, 32, 32)
    out = video_eval_transform(crop_size=40, short_side=40, crops=3)(_random_video())
    assert type(out) is torch.Tensor and out.shape == (3, 3, T, 40, 40) and out.dtype == torch.float32


def test_plain_uint8_tensor_is_accepted():
    frames = _random_video().as_subclass(torch.Tensor)
    assert video_eval_transform(crop_size=32, short_side=None)(frames).shape == (3, T, 32, 32)


def test_normalisation_values():
    # constant frames with known channel values: the output is (v / 255 - mean) / std, which is also the official
    # configs' (v - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375] on 0-255 (docs/method.md, "Recipes")
    values = torch.tensor([0.0, 128.0, 255.0])
    frames = values.view(1, 3, 1, 1).expand(T, 3, H, W)
    expected = ((values / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).view(3, 1, 1, 1)
    mmaction = ((values - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])).view(
        3, 1, 1, 1
    )
    torch.testing.assert_close(expected, mmaction, atol=1e-5, rtol=0)
    for t in (video_eval_transform(crop_size=32, short_side=None), video_train_transform(crop_size=24)):
        out = t(_video(frames))
        torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=0)


def test_bad_inputs_are_refused():
    t = video_eval_transform(crop_size=32, short_side=None)
    with pytest.raises(VidpriorError, match=r"permute\(0, 3, 1, 2\)"):
        t(torch.zeros(T, H, W, 3, dtype=torch.uint8))
    with pytest.raises(VidpriorError, match="uint8"):
        t(torch.zeros(T, 3, H, W))
    with pytest.raises(VidpriorError):
        video_eval_transform(crop_size=300, short_side=256)
    with pytest.raises(VidpriorError):
        video_eval_transform(crops=2)
    with pytest.raises(VidpriorError, match="bilinear"):
        video_train_transform(interpolation="bilinar")
    with pytest.raises(VidpriorError):
        video_train_transform(short_side=(320, 256))


# --------------------------------------------------------------------------------------------------------------------
# the same random parameters on every frame


@pytest.mark.parametrize("randaugment", [None, "m9-n2", "rand-m9-mstd0.5-inc1", "m10-n4-mstd101"])
def test_identical_frames_stay_identical(randaugment):
    frame = _random_video(t=1)
    clip = _video(frame.expand(T, -1, -1, -1).clone())
    t = video_train_transform(crop_size=24, short_side=(40, 48), randaugment=randaugment)
    for seed in range(15):
        torch.manual_seed(seed)
        out = t(clip)
        for i in range(1, T):
            assert torch.equal(out[:, i], out[:, 0]), f"seed {seed}: frame {i} differs from frame 0"


def _marker_clip() -> tuple[tv_tensors.Video, torch.Tensor]:
    """Frame t: background 20 * t, a 255 block at rows 8-15, cols 6-15 (left half)."""
    bg = torch.arange(T, dtype=torch.float32) * 20
    frames = bg.view(T, 1, 1, 1).expand(T, 3, H, W).clone()
    frames[:, :, 8:16, 6:16] = 255
    return _video(frames), bg


def _marker_maps(out: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Per frame, the fraction of marker in every output pixel (undoes the different backgrounds): (T, H, W)."""
    v = _to_255(out)[0]  # red channel, (T, H, W)
    return (v - bg.view(T, 1, 1)) / (255 - bg.view(T, 1, 1))


def test_marker_lands_at_the_same_place_in_every_frame():
    clip, bg = _marker_clip()
    t = video_train_transform(crop_size=24, short_side=(40, 48))
    seen = 0
    for seed in range(40):
        torch.manual_seed(seed)
        a = _marker_maps(t(clip), bg)
        if a[0].max() > 0.5:
            seen += 1
        for i in range(1, T):
            # equal up to the uint8 rounding of the two resampling steps
            torch.testing.assert_close(a[i], a[0], atol=0.02, rtol=0)
    assert seen > 5  # the crops did include the marker often enough for the check to mean something


def test_flip_is_drawn_per_clip_and_applies_to_every_frame():
    clip, bg = _marker_clip()
    # crop the whole frame (scale 1, the frame's own aspect) so that only the flip moves the marker
    t = video_train_transform(crop_size=28, short_side=None, scale=(1.0, 1.0), ratio=(W / H, W / H))
    sides = set()
    for seed in range(30):
        torch.manual_seed(seed)
        a = _marker_maps(t(clip), bg) > 0.5
        cols = [a[i].nonzero()[:, 1].float().mean().item() for i in range(T)]
        assert max(cols) - min(cols) < 1e-6
        sides.add("left" if cols[0] < 14 else "right")
    assert sides == {"left", "right"}


# --------------------------------------------------------------------------------------------------------------------
# three-crop


def _ramp(h: int, w: int, *, horizontal: bool, step: int = 4) -> tv_tensors.Video:
    """Every pixel holds its column (or row) index times ``step``."""
    n = w if horizontal else h
    assert (n - 1) * step <= 255
    r = torch.arange(n, dtype=torch.float32) * step
    r = r.view(1, 1, 1, n) if horizontal else r.view(1, 1, n, 1)
    return _video(r.expand(T, 3, h, w).clone())


def test_three_crop_covers_left_centre_right_of_a_wide_frame():
    out = video_eval_transform(crop_size=20, short_side=None, crops=3)(_ramp(20, 60, horizontal=True))
    assert out.shape == (3, 3, T, 20, 20)
    cols = _red_255(out[:, 0, 0]) / 4  # (crop, H, W) column indices
    for k, first in enumerate([0, 20, 40]):  # left, centre, right; the right crop ends at the last column
        expected = torch.arange(first, first + 20, dtype=torch.float32).expand(20, 20)
        torch.testing.assert_close(cols[k], expected, atol=1e-3, rtol=0)


def test_three_crop_covers_top_centre_bottom_of_a_tall_frame():
    out = video_eval_transform(crop_size=20, short_side=None, crops=3)(_ramp(50, 20, horizontal=False))
    rows = _red_255(out[:, 0, 0]) / 4
    for k, first in enumerate([0, 15, 30]):
        expected = torch.arange(first, first + 20, dtype=torch.float32).view(20, 1).expand(20, 20)
        torch.testing.assert_close(rows[k], expected, atol=1e-3, rtol=0)


def test_three_crop_after_short_side_resize():
    # 40x120 -> short side 20 -> 20x60: the crops still span the whole width, in order
    out = video_eval_transform(crop_size=20, short_side=20, crops=3)(_ramp(40, 120, horizontal=True, step=2))
    cols = _red_255(out[:, 0, 0]) / 2
    assert cols[0].min() < 2 and cols[2].max() > 117
    assert cols[0].mean() < cols[1].mean() < cols[2].mean()
    torch.testing.assert_close(cols[1].mean(), torch.tensor(59.5), atol=1.0, rtol=0)


def test_three_crop_offsets():
    assert ThreeCrop(20).offsets(30, 60) == [(5, 0), (5, 20), (5, 40)]  # centred on the short axis
    assert ThreeCrop(256).offsets(256, 340) == [(0, 0), (0, 42), (0, 84)]  # mmaction2's set (even difference)
    assert ThreeCrop(256).offsets(341, 256) == [(0, 0), (42, 0), (85, 0)]  # last crop ends at the border
    with pytest.raises(VidpriorError):
        ThreeCrop(64).offsets(40, 80)


# --------------------------------------------------------------------------------------------------------------------
# short-side jitter


def test_short_side_jitter_range():
    resize = RandomShortSideResize(20, 28)
    clip = _random_video(t=2)
    shorts = []
    for _ in range(300):
        out = resize(clip)
        assert out.shape[-1] == int(out.shape[-2] * W / H)  # aspect kept (long side as v2.Resize computes it)
        shorts.append(out.shape[-2])
    assert set(shorts) == set(range(20, 29))  # uniform over [min, max], both ends included


def test_short_side_is_exact():
    # v2.RandomShortestSize makes int(19 * (106 / 19)) = 105 here; the hand-written jitter must not
    out = RandomShortSideResize(106, 106)(_video(torch.zeros(1, 3, 19, 30)))
    assert min(out.shape[-2:]) == 106


def test_short_side_argument_forms():
    def resizes(t):
        return [s for s in _steps(t) if isinstance(s, (v2.Resize, RandomShortSideResize))]

    (jitter,) = resizes(video_train_transform())  # default (256, 320), as PySlowFast's TRAIN_JITTER_SCALES
    assert isinstance(jitter, RandomShortSideResize) and (jitter.min_size, jitter.max_size) == (256, 320)
    (fixed,) = resizes(video_train_transform(short_side=256))
    assert isinstance(fixed, v2.Resize) and fixed.size == [256]
    assert isinstance(resizes(video_train_transform(short_side=[256, 256]))[0], v2.Resize)
    assert resizes(video_train_transform(short_side=None)) == []


# --------------------------------------------------------------------------------------------------------------------
# SSv2 flip


def _has_flip(t: v2.Compose) -> bool:
    return any(isinstance(s, v2.RandomHorizontalFlip) for s in _steps(t))


def test_ssv2_has_no_flip_by_default_and_warns_when_turned_on():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _has_flip(video_train_transform(dataset="ssv2"))
        assert not _has_flip(video_train_transform(dataset="sth-v2"))
        assert not _has_flip(video_train_transform(dataset="ssv2", hflip=False))
        assert _has_flip(video_train_transform(dataset="k400"))
        assert _has_flip(video_train_transform(dataset="k400", hflip=True))
        assert _has_flip(video_train_transform())
        assert not _has_flip(video_train_transform(hflip=False))
    with pytest.warns(UserWarning, match="left to right"):
        t = video_train_transform(dataset="ssv2", hflip=True)
    assert _has_flip(t)  # the user's choice is honoured, with the warning


@pytest.mark.parametrize(
    ("name", "flip"),
    [
        ("ssv2", False),
        ("SSv2", False),
        ("sth-v2", False),
        ("jester", False),
        ("ssv1", False),
        ("list", True),
        ("k400", True),
        ("rawframes", True),
        ("imagefolder", True),
        (None, True),
    ],
)
def test_default_hflip_is_the_one_flip_policy(name, flip):
    assert default_hflip(name) is flip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _has_flip(video_train_transform(dataset=name)) is flip  # the transform's default is that policy


# --------------------------------------------------------------------------------------------------------------------
# determinism, pickling


def test_deterministic_under_manual_seed():
    t = video_train_transform(crop_size=24, short_side=(40, 48), randaugment="rand-m9-mstd0.5-inc1")
    clip = _random_video()
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outs.append(t(clip))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_transforms_pickle_for_worker_processes():
    t = video_train_transform(crop_size=24, short_side=(40, 48), randaugment="m9-n2-mstd0.5")
    t2 = pickle.loads(pickle.dumps(t))
    clip = _random_video()
    torch.manual_seed(0)
    a = t(clip)
    torch.manual_seed(0)
    assert torch.equal(a, t2(clip))


# --------------------------------------------------------------------------------------------------------------------
# RandAugment strings


def test_parse_randaugment():
    p = parse_randaugment("m9-n2-mstd0.5")
    assert (p.num_ops, p.magnitude, p.mstd) == (2, 9.0, 0.5)
    p = parse_randaugment("rand-m7-mstd0.5-inc1")
    assert (p.num_ops, p.magnitude, p.mstd) == (2, 7.0, 0.5)
    assert parse_randaugment("rand-n3").magnitude == 10.0  # timm's default magnitude
    assert parse_randaugment("rand-m9-mstd101").mstd == float("inf")  # timm: uniform sampling
    for bad in ("rand-m9-p0.3", "rand-m9-mmax12", "m9-x2", "m11", "n0", "m9--n2", ""):
        with pytest.raises(VidpriorError):
            parse_randaugment(bad)


def test_randaugment_magnitude_uses_timms_scale():
    (ra,) = [s for s in _steps(video_train_transform(randaugment="m9-n2")) if isinstance(s, v2.RandAugment)]
    assert ra.num_ops == 2
    rotate_fn, _ = ra._AUGMENTATION_SPACE["Rotate"]
    assert float(rotate_fn(ra.num_magnitude_bins, 1, 1)[ra.magnitude]) == pytest.approx(27.0)  # timm: 30 * 9 / 10
    (mstd,) = [s for s in _steps(video_train_transform(randaugment="m9-n2-mstd0.5")) if isinstance(s, RandAugmentMstd)]
    assert (mstd.num_ops, mstd.magnitude, mstd.mstd) == (2, 9.0, 0.5)
