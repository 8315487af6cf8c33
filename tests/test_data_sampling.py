"""Frame sampling: dense (Kinetics) and segment (SSv2) windows, test views, short-video policy."""

from __future__ import annotations

import itertools
import random

import pytest

from vidprior.data.sampling import DenseSampler, SegmentSampler, make_sampler
from vidprior.errors import VidpriorError


@pytest.mark.parametrize("clip_len,interval", [(8, 8), (32, 2), (13, 6), (4, 12)])
@pytest.mark.parametrize("num_frames", [300, 64, 57])
def test_dense_train_window(clip_len, interval, num_frames):
    s = DenseSampler(clip_len, interval)
    starts = set()
    for seed in range(3000):
        idx = s.train(num_frames, random.Random(seed))
        assert len(idx) == clip_len
        assert all(0 <= i < num_frames for i in idx)
        if num_frames >= s.span:
            assert [b - a for a, b in itertools.pairwise(idx)] == [interval] * (clip_len - 1)
            starts.add(idx[0])
    if num_frames >= s.span:
        # the start is uniform over every admissible position: both ends are reached
        assert min(starts) == 0 and max(starts) == num_frames - s.span
        assert len(starts) > min(50, num_frames - s.span)


def test_dense_train_is_a_pure_function_of_the_rng():
    s = DenseSampler(8, 8)
    assert s.train(300, random.Random(5)) == s.train(300, random.Random(5))
    assert any(s.train(300, random.Random(5)) != s.train(300, random.Random(k)) for k in range(6, 10))


@pytest.mark.parametrize("num_clips", [1, 3, 10])
def test_dense_test_views_are_uniform_and_inside(num_clips):
    s = DenseSampler(8, 8, num_clips=num_clips)
    n = 300
    clips = s.test(n)
    assert len(clips) == num_clips
    starts = [c[0] for c in clips]
    assert starts == sorted(starts)
    assert all(c[0] >= 0 and c[-1] < n for c in clips)
    if num_clips > 1:
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert max(gaps) - min(gaps) <= 1  # uniformly spaced
    # centred: equal margins before the first and after the last window (within one frame)
    part = (n - s.span + 1) / num_clips
    assert abs(starts[0] - part / 2) < 1


@pytest.mark.parametrize("short", ["loop", "repeat_last"])
def test_short_video_policy(short):
    s = DenseSampler(8, 8, short=short)
    idx = s.train(20, random.Random(0))  # a 57-frame window in a 20-frame video
    raw = [i * 8 for i in range(8)]
    expected = [i % 20 for i in raw] if short == "loop" else [min(i, 19) for i in raw]
    assert idx == expected
    assert s.test(20) == [expected]


@pytest.mark.parametrize("num_segments", [8, 32])
@pytest.mark.parametrize("num_frames", [240, 33, 8, 5])
def test_segments_one_frame_per_part(num_segments, num_frames):
    s = SegmentSampler(num_segments)
    for seed in range(50):
        idx = s.train(num_frames, random.Random(seed))
        assert len(idx) == num_segments and idx == sorted(idx)
        for k, i in enumerate(idx):
            lo = k * num_frames // num_segments
            hi = max((k + 1) * num_frames // num_segments, lo + 1)
            assert lo <= i < min(hi, num_frames) or (num_frames < num_segments and i == lo)
    (centres,) = s.test(num_frames)
    assert len(centres) == num_segments and all(0 <= c < num_frames for c in centres)
    if num_frames >= num_segments:
        assert len(set(centres)) == num_segments
        assert centres[0] == int(0.5 * num_frames / num_segments)


def test_geometries_and_errors():
    assert make_sampler("8x8") == DenseSampler(8, 8) and make_sampler("seg32") == SegmentSampler(32)
    assert make_sampler("13x6", num_clips=10) == DenseSampler(13, 6, 10)
    assert make_sampler("seg8") == SegmentSampler(8)
    for bad in ["8by8", "x8", "segx"]:
        with pytest.raises(VidpriorError, match="clip geometry"):
            make_sampler(bad)
    with pytest.raises(VidpriorError, match="clip_len=0"):
        DenseSampler(0, 8)
    with pytest.raises(VidpriorError, match="0 frames"):
        DenseSampler(8, 8).train(0, random.Random(0))
