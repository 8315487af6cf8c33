"""Frame sampling against hand-computed windows, and its argument checks (mutation testing found these untested)."""

from __future__ import annotations

import random

import pytest

from vidprior.data.sampling import DenseSampler, SegmentSampler, make_sampler
from vidprior.errors import VidpriorError


def test_dense_test_windows_by_hand():
    # mmaction2 SampleFrames (test): part = (n - span + 1) / clips, start_i = int(part * i + part / 2)
    assert DenseSampler(2, 1, num_clips=1).test(10) == [[4, 5]]  # part 9 -> start 4
    # span 57 in 100 frames, 3 clips: part 44/3 -> starts int(7.33), int(22.0), int(36.67)
    assert [c[0] for c in DenseSampler(8, 8, num_clips=3).test(100)] == [7, 22, 36]
    assert DenseSampler(8, 8, num_clips=3).test(100)[1] == list(range(22, 22 + 57, 8))
    # exactly one window's length: every clip starts at 0
    assert DenseSampler(4, 2, num_clips=2).test(7) == [[0, 2, 4, 6], [0, 2, 4, 6]]


def test_a_one_frame_video_is_sampled_not_refused():
    assert DenseSampler(4, 2).train(1, random.Random(0)) == [0, 0, 0, 0]
    assert DenseSampler(4, 2, short="repeat_last").test(1) == [[0, 0, 0, 0]]
    assert SegmentSampler(3).train(1, random.Random(0)) == [0, 0, 0]
    assert SegmentSampler(3).test(1) == [[0, 0, 0]]
    for bad in (0, -5):
        with pytest.raises(VidpriorError, match=f"{bad} frames"):
            SegmentSampler(3).test(bad)


def test_segment_training_frames_cover_each_whole_part():
    s = SegmentSampler(4)
    seen = [set() for _ in range(4)]
    for seed in range(400):
        for k, i in enumerate(s.train(40, random.Random(seed))):
            seen[k].add(i)
    assert seen == [set(range(10 * k, 10 * k + 10)) for k in range(4)]


@pytest.mark.parametrize("bad", [True, 2.0, "8", 0, -1])
def test_dense_sampler_refuses_non_positive_integers(bad):
    for args in ((bad, 8, 1), (8, bad, 1), (8, 8, bad)):
        with pytest.raises(VidpriorError, match="expected a positive integer"):
            DenseSampler(*args)


@pytest.mark.parametrize("bad", [True, 2.0, "8", 0, -1])
def test_segment_sampler_refuses_non_positive_integers(bad):
    with pytest.raises(VidpriorError, match=r"SegmentSampler num_segments=.*: expected a positive integer"):
        SegmentSampler(bad)


def test_one_segment_and_one_frame_clips_are_allowed():
    assert SegmentSampler(1).test(9) == [[4]]
    assert DenseSampler(1, 1).test(9) == [[4]]


def test_short_policy_is_checked_and_passed_through():
    with pytest.raises(VidpriorError, match="short='wrap': expected 'loop' or 'repeat_last'"):
        DenseSampler(8, 8, short="wrap")
    assert make_sampler("4x2", short="repeat_last").short == "repeat_last"
    assert make_sampler("4x2", num_clips=3, short="repeat_last") == DenseSampler(4, 2, 3, "repeat_last")


def test_geometry_error_shows_examples():
    with pytest.raises(VidpriorError) as info:
        make_sampler("eight")
    assert str(info.value) == (
        "clip geometry 'eight': expected 'FRAMESxINTERVAL' (e.g. '8x8', '32x2', '13x6') or 'segN' (e.g. 'seg8')"
    )
