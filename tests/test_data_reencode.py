"""Re-encoding: short side, aspect, frame count, barcodes, keyframe interval, suffix rule, atomic outputs, trees that
resume after an interruption and report bad inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import av
import pytest

from tests.video_fixtures import corrupt_files, read_index, write_video
from vidprior.data.decode import open_video, probe
from vidprior.data.errors import DecodeError
from vidprior.data.reencode import (
    ReencodeSummary,
    output_size,
    output_suffix,
    reencode_tree,
    reencode_video,
)
from vidprior.errors import VidpriorError

# relative path -> (frames, write_video keyword arguments)
GOOD = {
    "a/x.mp4": (40, {"gop": 250, "audio": True}),
    "a/y.webm": (30, {"codec": "libvpx-vp9", "width": 48, "height": 64}),  # portrait VP9
    "b/c/z.mkv": (30, {"width": 66, "height": 50}),
}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    for rel, (n, kwargs) in GOOD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, n, **kwargs)
    bad = {p: r for p, r in corrupt_files(root / "bad").items() if p.is_file()}
    shutil.rmtree(root / "bad" / "folder.mp4")
    return root, bad


def frame_indices(path) -> list[int]:
    with open_video(path) as r:
        return [read_index(f) for f in r.get_frames(range(r.info.num_frames))]


def keyframes(path) -> list[int]:
    with av.open(str(path)) as c:
        packets = sorted((p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.pts is not None)
    return [i for i, (_, k) in enumerate(packets) if k]


def test_size_rule():
    assert output_size(64, 48, 32) == (42, 32)
    assert output_size(48, 64, 32) == (32, 42)
    assert output_size(1280, 720, 320) == (568, 320)
    assert output_size(640, 480, 320) == (426, 320)
    assert output_size(97, 65, 320) == (96, 64)  # never up-scaled, rounded to even sizes
    with pytest.raises(VidpriorError):
        output_size(64, 48, 0)


def test_suffix_rule():
    assert output_suffix(".mp4") == ".mp4" and output_suffix(".mkv") == ".mkv"
    assert output_suffix(".webm") == ".mp4" and output_suffix(".avi") == ".mp4" and output_suffix(".MP4") == ".mp4"
    assert output_suffix(".webm", "libvpx-vp9") == ".webm" and output_suffix(".mp4", "libvpx-vp9") == ".mp4"
    assert output_suffix(".avi", "libvpx-vp9") == ".webm"
    with pytest.raises(VidpriorError, match="codec"):
        output_suffix(".mp4", "mpeg2")


def test_reencode_video_keeps_frames_and_aspect(src, tmp_path):
    root, _ = src
    info = reencode_video(root / "a/x.mp4", tmp_path / "x.mp4", short_side=32)
    assert (info.width, info.height) == (42, 32) and info.codec == "h264"
    assert abs(info.width / info.height - 64 / 48) < 2 / 32
    assert info.num_frames == 40 and info.fps == pytest.approx(25)
    assert frame_indices(tmp_path / "x.mp4") == list(range(40))
    with av.open(str(tmp_path / "x.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]  # audio dropped
    assert sorted(os.listdir(tmp_path)) == ["x.mp4"]  # no temporary file left

    info = reencode_video(root / "a/y.webm", tmp_path / "y.mp4", short_side=32)  # VP9 -> H.264, portrait
    assert (info.width, info.height, info.num_frames, info.codec) == (32, 42, 30, "h264")
    assert frame_indices(tmp_path / "y.mp4") == list(range(30))

    info = reencode_video(root / "b/c/z.mkv", tmp_path / "z.mkv", short_side=320)  # never up-scaled
    assert (info.width, info.height, info.num_frames) == (66, 50, 30)


def test_keyframe_interval_and_vp9_output(src, tmp_path):
    root, _ = src
    reencode_video(root / "a/x.mp4", tmp_path / "g8.mp4", short_side=32, gop=8)
    assert keyframes(tmp_path / "g8.mp4") == [0, 8, 16, 24, 32]
    reencode_video(root / "a/x.mp4", tmp_path / "default.mp4", short_side=32)
    assert keyframes(tmp_path / "default.mp4") == [0]  # x264's default interval (250) is longer than the video
    info = reencode_video(root / "a/x.mp4", tmp_path / "v.webm", short_side=32, gop=10, codec="libvpx-vp9")
    assert info.codec == "vp9" and keyframes(tmp_path / "v.webm") == [0, 10, 20, 30]
    assert frame_indices(tmp_path / "v.webm") == list(range(40))
    with pytest.raises(VidpriorError, match="cannot hold libx264"):
        reencode_video(root / "a/x.mp4", tmp_path / "h264.webm")
    with pytest.raises(VidpriorError, match="gop"):
        reencode_video(root / "a/x.mp4", tmp_path / "bad_gop.mp4", gop=0)


def test_bad_input_leaves_nothing(src, tmp_path):
    _, bad = src
    for path, reason in bad.items():
        dst = tmp_path / (path.stem + ".mp4")
        with pytest.raises(DecodeError) as info:
            reencode_video(path, dst, short_side=32)
        assert info.value.reason == reason, path.name
        assert not dst.exists()
    assert os.listdir(tmp_path) == []


def outputs(root) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_tree_resume_and_bad_files(src, tmp_path):
    root, bad = src
    dst = tmp_path / "out"
    summary = reencode_tree(root, dst, short_side=32, gop=8, workers=2, progress=False)
    assert isinstance(summary, ReencodeSummary)
    expected = {"a/x.mp4", "a/y.mp4", "b/c/z.mkv"}  # y.webm -> y.mp4: WebM cannot hold H.264
    assert set(outputs(dst)) == expected
    assert summary.total == len(GOOD) + len(bad) and summary.done == len(GOOD) and summary.skipped == 0
    assert {os.path.basename(p): r for p, (r, _) in summary.failed.items()} == {p.name: r for p, r in bad.items()}
    assert "failed" in str(summary) and "truncated" in str(summary)
    for rel in expected:
        info = probe(dst / rel)
        assert min(info.width, info.height) == 32
        assert keyframes(dst / rel) == list(range(0, info.num_frames, 8))
        assert frame_indices(dst / rel) == list(range(info.num_frames))

    before = outputs(dst)
    again = reencode_tree(root, dst, short_side=32, gop=8, workers=1, progress=False)
    assert again.skipped == len(GOOD) and again.done == 0 and outputs(dst) == before  # existing outputs untouched

    # an interrupted run: an output missing, its temporary file left behind (and one more stale .tmp)
    (dst / "a/x.mp4").unlink()
    (dst / "a/x.mp4.tmp").write_bytes(b"half written")
    (dst / "b/c/z.mkv.tmp").write_bytes(b"stale")
    resumed = reencode_tree(root, dst, short_side=32, gop=8, workers=1, progress=False)
    assert resumed.cleaned == 2 and resumed.done == 1 and resumed.skipped == len(GOOD) - 1
    assert set(outputs(dst)) == expected  # no .tmp left
    assert frame_indices(dst / "a/x.mp4") == list(range(40))
    assert outputs(dst)["b/c/z.mkv"] == before["b/c/z.mkv"]


def test_tree_arguments(src, tmp_path):
    root, _ = src
    with pytest.raises(VidpriorError, match="not a folder"):
        reencode_tree(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(VidpriorError, match="must differ"):
        reencode_tree(root, root)


def test_command_line(src, tmp_path):
    root, _ = src
    dst = tmp_path / "cli"
    cmd = [sys.executable, "-m", "vidprior", "data", "reencode", str(root / "a"), str(dst), "--short-side", "32"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 re-encoded" in result.stdout and set(outputs(dst)) == {"x.mp4", "y.mp4"}
