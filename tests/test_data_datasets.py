"""Datasets on real (generated) videos: sampled frames, multi-view, determinism, bad files, workers, CLI check."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tests.video_fixtures import corrupt_files, read_index, write_video
from vidprior.data.datasets import ImageDataset, RawFrameDataset, VideoDataset, VideoFramesDataset
from vidprior.data.lists import Record, read_rawframe_list, read_video_list
from vidprior.data.robust import DataQualityError, RobustDataset
from vidprior.data.sampling import DenseSampler, SegmentSampler

LENGTHS = [40, 61, 33]


def write_png(chw: torch.Tensor, path: str) -> None:
    from PIL import Image

    Image.fromarray(chw.permute(1, 2, 0).contiguous().numpy()).save(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = []
    for i, n in enumerate(LENGTHS):
        p = root / f"v{i}.mp4"
        write_video(p, n, gop=16 if i % 2 == 0 else 250)
        paths.append(p)
    (root / "list.txt").write_text("".join(f"v{i}.mp4 {i}\n" for i in range(len(LENGTHS))))
    return root, paths


def _indices(video_cthw: torch.Tensor) -> list[int]:
    return [read_index(video_cthw[:, t]) for t in range(video_cthw.shape[1])]


def test_train_clip_frames_follow_the_sampler(videos):
    root, _ = videos
    records = read_video_list(root / "list.txt", root=root)
    ds = VideoDataset(records, sampler=DenseSampler(4, 3), train=True)
    for i, rec in enumerate(records):
        sample = ds[i]
        video = sample["video"]
        assert video.shape[:2] == (3, 4) and video.dtype == torch.uint8  # (C, T, H, W)
        idx = _indices(video)
        assert [b - a for a, b in itertools.pairwise(idx)] == [3, 3, 3]
        assert idx[0] >= 0 and idx[-1] < LENGTHS[i]
        assert sample["label"] == rec.label and sample["index"] == i


def test_sampling_is_a_pure_function_of_seed_epoch_index(videos):
    root, _ = videos
    records = read_video_list(root / "list.txt", root=root)
    a = VideoDataset(records, sampler=DenseSampler(2, 1), train=True, seed=3)
    b = VideoDataset(records, sampler=DenseSampler(2, 1), train=True, seed=3)
    assert _indices(a[1]["video"]) == _indices(b[1]["video"])
    starts = set()
    for epoch in range(8):
        a.set_epoch(epoch)
        starts.add(_indices(a[1]["video"])[0])
    assert len(starts) > 1  # the epoch changes the draw


def test_multi_view_test_clips(videos):
    root, _ = videos
    records = read_video_list(root / "list.txt", root=root)
    sampler = DenseSampler(4, 2, num_clips=3)
    ds = VideoDataset(records, sampler=sampler, train=False)
    video = ds[1]["video"]
    assert video.shape[:3] == (3, 3, 4)  # (views, C, T, ...)
    assert [_indices(v) for v in video] == sampler.test(LENGTHS[1])
    seg = VideoDataset(records, sampler=SegmentSampler(8), train=False)
    assert [_indices(v) for v in seg[0]["video"]] == SegmentSampler(8).test(LENGTHS[0])


def test_bad_files_are_substituted_and_reported_exactly(videos, tmp_path):
    _root, paths = videos
    bad = corrupt_files(tmp_path)
    records = [Record(str(p), 0) for p in paths] + [Record(str(p), 1) for p in bad]
    report = tmp_path / "skipped.jsonl"
    ds = VideoDataset(
        records, sampler=DenseSampler(2, 1), train=True, max_bad_fraction=1.0, report_path=report, decode_timeout=None
    )
    for i in range(len(ds)):
        sample = ds[i]
        assert sample is not None and sample["label"] == 0  # always a good video
        if i >= len(paths):
            assert sample["substituted_by"] < len(paths)
    assert {p: r for p, (r, _) in ds.skipped.items()} == {str(p): r for p, r in bad.items()}
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    assert {x["path"]: x["reason"] for x in lines} == {str(p): r for p, r in bad.items()}
    # the substitute is a pure function of (seed, epoch, index)
    again = VideoDataset(records, sampler=DenseSampler(2, 1), train=True, max_bad_fraction=1.0)
    k = len(paths)
    assert again[k]["substituted_by"] == ds[k]["substituted_by"]


def test_too_many_bad_files_stop_within_50_samples(videos, tmp_path):
    _root, paths = videos
    bad = corrupt_files(tmp_path)
    records = [Record(str(paths[i % len(paths)]), 0) for i in range(80)] + [Record(str(p), 0) for p in bad] * 4
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(0)).tolist()
    records = [records[i] for i in order]
    ds = VideoDataset(records, sampler=DenseSampler(2, 1), train=True, decode_timeout=None)  # default 1%
    loaded = 0
    with pytest.raises(DataQualityError, match=r"files are bad, more than max_bad_fraction=0.01") as info:
        for i in range(len(ds)):
            ds[i]
            loaded += 1
    assert loaded < 50
    assert "reasons" in str(info.value)


def test_broken_decoder_stops_within_50_samples(tmp_path):
    records = [Record(str(tmp_path / f"missing{i}.mp4"), 0) for i in range(500)]
    ds = VideoDataset(records, sampler=DenseSampler(2, 1), train=True, max_bad_fraction=1.0, decode_timeout=None)
    with pytest.raises(DataQualityError, match="50 samples in a row failed"):
        ds[0]


class _Hanging(RobustDataset):
    """Index 0 hangs (like a decoder stuck on a file) until ``release`` is set; others load instantly."""

    release = threading.Event()  # set by the test when done, so the abandoned thread does not delay the exit

    def _load(self, index, rng):
        if index == 0:
            self.release.wait(30)
        return {"value": index}

    def path_of(self, index):
        return f"file{index}.mp4"


def test_decode_timeout_abandons_a_hanging_file():
    ds = _Hanging(10, decode_timeout=0.5, max_bad_fraction=1.0)
    t0 = time.perf_counter()
    try:
        sample = ds[0]
        later = ds[3]
    finally:
        _Hanging.release.set()
    assert time.perf_counter() - t0 < 25  # given up, not waited out (the hang lasts 30 s)
    assert sample["value"] != 0 and ds.skipped["file0.mp4"] == ("timeout", "no result within 0.5 s")
    # the limit is wall-clock time: on a starved machine an instant load can miss it too, never for another reason
    assert {reason for reason, _ in ds.skipped.values()} == {"timeout"}
    # a fresh decode thread serves the next samples (behind the hang on the old one, each would time out)
    assert later["value"] == 3 or "file3.mp4" in ds.skipped


def test_dataloader_workers(videos, tmp_path):
    _root, paths = videos
    bad = corrupt_files(tmp_path)
    records = [Record(str(p), 0) for p in paths] * 2 + [Record(str(p), 1) for p in bad]
    report = tmp_path / "skipped.jsonl"
    ds = VideoDataset(records, sampler=DenseSampler(4, 2), train=True, max_bad_fraction=1.0, report_path=report)
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    seen = 0
    for batch in loader:
        assert batch["video"].shape[1:3] == (3, 4)
        assert (batch["label"] == 0).all()
        seen += len(batch["video"])
    assert seen == len(records)
    assert {json.loads(x)["path"] for x in report.read_text().splitlines()} == {str(p) for p in bad}


def test_raw_frames(videos, tmp_path):
    from vidprior.data.decode import open_video

    _, paths = videos
    with open_video(paths[0]) as r:
        frames = r.get_frames(list(range(LENGTHS[0])))
    folder = tmp_path / "frames" / "v0"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        write_png(f, str(folder / f"img_{i + 1:05d}.png"))
    (tmp_path / "raw.txt").write_text(f"v0 {LENGTHS[0]} 5\nmissing_dir 20 1\n")
    records = read_rawframe_list(tmp_path / "raw.txt", root=tmp_path / "frames")
    ds = RawFrameDataset(
        records, template="img_{:05d}.png", sampler=DenseSampler(4, 3), train=False, max_bad_fraction=1.0
    )
    video = ds[0]["video"]
    assert [_indices(v) for v in video] == DenseSampler(4, 3).test(LENGTHS[0]) and ds[0]["label"] == 5
    assert ds[1]["label"] == 5 and str(tmp_path / "frames" / "missing_dir") in ds.skipped


def test_images_and_video_frames_as_images(videos, tmp_path):
    _, paths = videos
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        write_png(torch.full((3, 8, 8), 40 if c == "a" else 200, dtype=torch.uint8), str(tmp_path / c / "x.png"))
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    from vidprior.data.lists import scan_image_folder

    records, classes = scan_image_folder(tmp_path)
    ds = ImageDataset(records, max_bad_fraction=1.0)
    labels = sorted(ds[i]["label"] for i in range(len(ds)))
    assert classes == ["a", "b"] and len(labels) == 3
    assert list(ds.skipped.values())[0][0] == "decode_error"
    frames = VideoFramesDataset([Record(str(p), i) for i, p in enumerate(paths)], frames_per_video=2, train=False)
    assert len(frames) == 2 * len(paths)
    s = frames[3]  # video 1, second half: its centre frame
    n = LENGTHS[1]
    assert s["label"] == 1 and s["frame"] == (n // 2 + n) // 2
    import numpy as np

    chw = torch.from_numpy(np.array(s["image"])).permute(2, 0, 1)
    assert read_index(chw) == s["frame"]


def test_data_check_command(videos, tmp_path):
    _, paths = videos
    bad = corrupt_files(tmp_path)
    folder = tmp_path
    for p in paths:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "manifest.jsonl"
    cmd = [sys.executable, "-m", "vidprior", "data", "check", str(folder), "--out", str(out), "--workers", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    found_bad = {p: r["reason"] for p, r in rows.items() if not r["ok"]}
    # every bad file on disk is in the manifest (an empty file and a directory named .mp4 included), none dropped
    expected_bad = {str(p): reason for p, reason in bad.items() if Path(p).exists()}
    assert {"empty", "not_a_file"} <= set(expected_bad.values())
    assert found_bad == expected_bad
    assert all(rows[str(folder / p.name)]["num_frames"] == n for p, n in zip(paths, LENGTHS, strict=True))
    assert "bad" in result.stdout and "Traceback" not in result.stderr
