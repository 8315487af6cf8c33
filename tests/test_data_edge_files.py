"""Real files that break naive decoders: a stream-copy trimmed mp4 (edit list), duplicate timestamps, images named
like videos. Each is frame-exact against a plain sequential PyAV decode, or refused with a clear reason, in
``open_video``, ``probe`` and ``vidprior data check`` alike."""

from __future__ import annotations

import random

import av
import pytest

from tests.video_fixtures import (
    read_index,
    sequential_indices,
    write_duplicate_pts_mkv,
    write_image,
    write_trimmed_mp4,
    write_video,
)
from vidprior.data.check import check_files
from vidprior.data.decode import open_video, probe
from vidprior.data.errors import NO_VIDEO_STREAM, DecodeError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge")
    src = write_video(d / "src.mp4", 60, gop=16)  # keyframes at 0, 16, 32, 48; B-frames
    return {
        "trimmed": write_trimmed_mp4(src, d / "trimmed.mp4", 20),  # cut inside the second GOP
        "trimmed_open": write_trimmed_mp4(src, d / "trimmed_at_key.mp4", 16),  # cut on a keyframe
        "dup": write_duplicate_pts_mkv(d / "dup.mkv", 40),
        "png": write_image(d / "png.mp4", "PNG"),
        "jpeg": write_image(d / "jpeg.mp4", "JPEG"),
    }


def _has_discarded_keyframe(path) -> bool:
    with av.open(str(path)) as c:
        return any(p.is_discard and p.is_keyframe for p in c.demux(video=0) if p.size)


def test_trimmed_fixture_is_a_real_edit_list(files):
    data = files["trimmed"].read_bytes()
    assert b"elst" in data  # the muxer wrote an edit list
    assert _has_discarded_keyframe(files["trimmed"])  # the GOP's keyframe is before the cut, flagged discard
    assert sequential_indices(files["trimmed"]) == list(range(20, 60))


@pytest.mark.parametrize("name", ["trimmed", "trimmed_open", "dup"])
def test_every_frame_matches_a_sequential_decode(files, name):
    reference = sequential_indices(files[name])
    with open_video(files[name]) as r:
        assert r.info.num_frames == len(reference)
        for i in range(len(reference)):  # one frame per request: every index reached by a seek
            assert read_index(r.get_frames([i])[0]) == reference[i], i
        assert [read_index(f) for f in r.get_frames(range(len(reference)))] == reference
        rng = random.Random(0)
        for _ in range(10):
            idx = rng.sample(range(len(reference)), 6)
            assert [read_index(f) for f in r.get_frames(idx)] == [reference[i] for i in idx]


def test_duplicate_timestamps_fixture_has_them(files):
    with av.open(str(files["dup"])) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert len(pts) == 40 and len(set(pts)) == 20
    assert sequential_indices(files["dup"]) == list(range(40))


@pytest.mark.parametrize("name", ["png", "jpeg"])
def test_an_image_named_mp4_is_refused(files, name):
    path = files[name]
    for call in (lambda: open_video(path), lambda: probe(path)):
        with pytest.raises(DecodeError) as info:
            call()
        assert info.value.reason == NO_VIDEO_STREAM and "image" in info.value.detail
    (row,) = check_files([str(path)], workers=1, progress=False)
    assert not row["ok"] and row["reason"] == NO_VIDEO_STREAM


def test_data_check_passes_what_training_reads_and_only_that(files):
    paths = [str(files["trimmed"]), str(files["trimmed_open"]), str(files["dup"]), str(files["png"])]
    rows = check_files(paths, workers=1, progress=False)
    assert [r["ok"] for r in rows] == [True, True, True, False]
    assert [r.get("num_frames") for r in rows[:3]] == [40, 44, 40]
