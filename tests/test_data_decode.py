"""Video decoding: exact frames (barcoded) for H.264 and VP9, long and short GOPs, odd sizes, B-frames and variable
GOPs; decode-once multi-view; seek counts; a reason for every bad file; no leaked files; DataLoader workers."""

from __future__ import annotations

import os
import pickle
import random

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tests.video_fixtures import barcode_frame, corrupt_files, read_index, write_video
from vidprior.data import backends
from vidprior.data.decode import (
    BACKENDS,
    BackendUnavailableError,
    PyAVReader,
    VideoInfo,
    VideoReader,
    available_backends,
    open_video,
    probe,
)
from vidprior.data.errors import NO_VIDEO_STREAM, TRUNCATED, DecodeError
from vidprior.errors import VidpriorError

# name -> (file name, frames, write_video keyword arguments)
SPECS = {
    "h264-g16": ("h264_g16.mp4", 100, {}),
    "h264-g250": ("h264_g250.mp4", 300, {"gop": 250}),
    "h264-g16-odd": ("h264_g16_odd.mp4", 100, {"width": 97, "height": 65, "pix_fmt": "yuv444p"}),
    "h264-g250-odd": ("h264_g250_odd.mp4", 300, {"gop": 250, "width": 97, "height": 65, "pix_fmt": "yuv444p"}),
    "vp9-g16": ("vp9_g16.webm", 100, {"codec": "libvpx-vp9"}),
    "vp9-g250": ("vp9_g250.webm", 300, {"codec": "libvpx-vp9", "gop": 250}),
    "vp9-g16-odd": ("vp9_g16_odd.webm", 100, {"codec": "libvpx-vp9", "width": 97, "height": 65}),
    "vp9-g250-odd": ("vp9_g250_odd.webm", 300, {"codec": "libvpx-vp9", "gop": 250, "width": 97, "height": 65}),
    "h264-vargop": ("h264_vargop.mp4", 100, {"gop": 1000, "keyframes": [0, 7, 30, 31, 77]}),
    "vp9-vargop": ("vp9_vargop.webm", 100, {"codec": "libvpx-vp9", "gop": 1000, "keyframes": [0, 7, 30, 31, 77]}),
    "h264-mkv-audio": ("h264_audio.mkv", 90, {"gop": 40, "audio": True}),
    "h264-moov-last-audio": ("h264_moov_last.mp4", 90, {"gop": 250, "audio": True, "faststart": False}),
    "h264-no-bframes": ("h264_nob.mp4", 60, {"bframes": False}),
}
NAMES = list(SPECS)
CORE = ["h264-g16", "h264-g250", "vp9-g16", "vp9-g250"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[str, int, dict]]:
    root = tmp_path_factory.mktemp("decode")
    out = {}
    for name, (file, n, kwargs) in SPECS.items():
        out[name] = (str(write_video(root / file, n, **kwargs)), n, kwargs)
    return out


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict:
    return corrupt_files(tmp_path_factory.mktemp("bad"))


def indices_of(frames: torch.Tensor) -> list[int]:
    return [read_index(f) for f in frames]


def index_sets(n: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    start = rng.randrange(0, n - 32)
    seg = n / 8
    unsorted = rng.sample(range(n), 12)
    return {
        "sorted": sorted(rng.sample(range(n), 10)),
        "unsorted": unsorted,
        "repeated": [unsorted[0], unsorted[1], unsorted[0], unsorted[0], 3, 3],
        "first": [0],
        "last": [n - 1],
        "last-first": [n - 1, 0],
        "dense32": list(range(start, start + 32)),
        "segments8": [int(seg * j + rng.random() * seg) for j in range(8)],
        "strided-backwards": list(range(n - 1, -1, -7)),
    }


def keyframes_and_bframes(path: str) -> tuple[list[int], bool]:
    """Keyframe positions (presentation order) and whether decode order differs from presentation order."""
    with av.open(path) as c:
        packets = [(p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.pts is not None]
    order = sorted(packets)
    return [i for i, (_, k) in enumerate(order) if k], [p for p, _ in packets] != [p for p, _ in order]


# ---------------------------------------------------------------------------------------------------------------
# fixtures themselves


def test_barcode_round_trip_and_channel_order():
    for w, h in [(64, 48), (97, 65), (42, 32), (568, 320)]:
        for i in [0, 1, 2, 5, 127, 300, 8191]:
            assert read_index(torch.from_numpy(barcode_frame(i, w, h)).permute(2, 0, 1)) == i
    with pytest.raises(ValueError, match="RGB order"):
        read_index(torch.from_numpy(barcode_frame(5, 64, 48)).permute(2, 0, 1).flip(0))  # BGR


def test_fixture_videos_have_the_intended_structure(videos):
    kf, reordered = keyframes_and_bframes(videos["h264-g16"][0])
    assert kf == list(range(0, 100, 16)) and reordered  # x264 B-frames: decode order != presentation order
    kf, _ = keyframes_and_bframes(videos["h264-g250"][0])
    assert kf == [0, 250]
    assert keyframes_and_bframes(videos["vp9-g250"][0])[0] == [0, 250]
    assert keyframes_and_bframes(videos["h264-vargop"][0])[0] == [0, 7, 30, 31, 77]
    assert keyframes_and_bframes(videos["vp9-vargop"][0])[0] == [0, 7, 30, 31, 77]
    assert not keyframes_and_bframes(videos["h264-no-bframes"][0])[1]


# ---------------------------------------------------------------------------------------------------------------
# exact frames


@pytest.mark.parametrize("name", NAMES)
def test_info_and_exact_frame_count(videos, name):
    path, n, kw = videos[name]
    with av.open(path) as c:  # reference: decode everything
        decoded = sum(1 for _ in c.decode(c.streams.video[0]))
    info = probe(path)
    assert isinstance(info, VideoInfo)
    assert info.num_frames == n == decoded
    assert (info.width, info.height) == (kw.get("width", 64), kw.get("height", 48))
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(n / 25, abs=1e-6)
    assert info.codec == ("vp9" if kw.get("codec") == "libvpx-vp9" else "h264")
    assert info.path == path
    with open_video(path) as r:
        assert r.info == info


@pytest.mark.parametrize("name", NAMES)
def test_requested_frames_are_returned(videos, name):
    path, n, _ = videos[name]
    sets = index_sets(n, seed=NAMES.index(name))
    with open_video(path) as shared:  # one reader for every request: continues or seeks as needed
        for label, idx in sets.items():
            frames = shared.get_frames(idx)
            assert frames.dtype == torch.uint8 and frames.shape == (len(idx), 3, shared.info.height, shared.info.width)
            assert indices_of(frames) == idx, label
            with open_video(path) as fresh:
                assert torch.equal(fresh.get_frames(idx), frames), label


@pytest.mark.parametrize("name", ["h264-g16", "vp9-g16-odd", "h264-vargop"])
def test_every_frame_in_order_and_reversed(videos, name):
    path, n, _ = videos[name]
    with open_video(path) as r:
        assert indices_of(r.get_frames(range(n))) == list(range(n))
        assert r.seeks == 1 and r.frames_decoded == n
        assert indices_of(r.get_frames(list(range(n))[::-1])) == list(range(n))[::-1]


@pytest.mark.parametrize("name", NAMES)
def test_random_sets_against_full_decode(videos, name):
    """Pixel-exact: the frames equal those of a plain full decode."""
    path, n, _ = videos[name]
    with av.open(path) as c:
        ref = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])])
    ref = ref.permute(0, 3, 1, 2)
    rng = random.Random(1)
    for _ in range(5):
        idx = [rng.randrange(n) for _ in range(rng.randrange(1, 9))]
        with open_video(path) as r:
            assert torch.equal(r.get_frames(idx), ref[idx])


# ---------------------------------------------------------------------------------------------------------------
# decoding cost: one forward pass, each frame at most once, few seeks


def spy_on_decoded(reader: PyAVReader) -> list[int]:
    """Record the index of every frame that comes out of the decoder."""
    seen: list[int] = []
    original = reader._frames

    def frames():
        for i, f in original():
            seen.append(i)
            yield i, f

    reader._frames = frames
    return seen


def multi_view(n: int, clips: int = 10, frames: int = 8, interval: int = 4) -> list[list[int]]:
    span = (frames - 1) * interval + 1
    step = (n - span) / clips
    return [[int(step * k + step / 2) + interval * j for j in range(frames)] for k in range(clips)]


@pytest.mark.parametrize("name", NAMES)
def test_get_clips_decodes_the_union_once(videos, name):
    path, n, _ = videos[name]
    clips = multi_view(n)
    with open_video(path) as r:
        seen = spy_on_decoded(r)
        views = r.get_clips(clips)
        keyframes = r._keyframes
        first, last = min(map(min, clips)), max(map(max, clips))
        start = max(k for k in keyframes if k <= first)
        assert r.frames_decoded == len(seen) <= last - start + 1  # at most one forward pass
        assert len(seen) == len(set(seen))  # no frame decoded twice
    assert [indices_of(v) for v in views] == clips
    for clip, view in zip(clips, views, strict=True):
        with open_video(path) as single:
            assert torch.equal(single.get_frames(clip), view)


@pytest.mark.parametrize("name", ["h264-g250", "vp9-g250", "h264-g250-odd", "h264-moov-last-audio"])
def test_dense_clip_in_a_long_gop_seeks_once(videos, name):
    path, n, _ = videos[name]
    for start in (0, n // 3, n - 40):
        with open_video(path) as r:
            seen = spy_on_decoded(r)
            clip = list(range(start, start + 32))
            assert indices_of(r.get_frames(clip)) == clip
            assert r.seeks == 1
            kf = max(k for k in r._keyframes if k <= start)
            assert len(seen) == len(set(seen)) and r.frames_decoded <= start + 32 - kf


def test_forward_in_a_gop_and_seek_across_far_keyframes(videos):
    path, _, _ = videos["h264-g16"]
    with open_video(path) as r:  # same GOP and the next one: one pass, no re-seek
        r.get_frames([17, 30, 33])
        assert r.seeks == 1 and r.frames_decoded <= 33 - 16 + 1
    with open_video(path) as r:  # far apart: seek forward to the later keyframe instead of decoding the gap
        r.get_frames([2, 90])
        assert r.seeks == 2 and r.frames_decoded <= (2 + 1) + (90 - 80 + 1)
    with open_video(path) as r:  # later requests continue forward, earlier ones seek back
        r.get_frames([20])
        r.get_frames([24])
        assert r.seeks == 1
        r.get_frames([5])
        assert r.seeks == 2


def test_non_reference_frames_are_skipped_in_the_lead_in(videos):
    path, _, _ = videos["h264-g250"]
    with open_video(path) as r:
        assert indices_of(r.get_frames([200])) == [200]
        assert r.frames_decoded < 201  # B-frames before 200 that nothing references were not decoded


# ---------------------------------------------------------------------------------------------------------------
# arguments and lifetime


def test_indices_out_of_range_and_empty(videos):
    path, n, _ = videos["h264-g16"]
    with open_video(path) as r:
        for bad_idx in ([-1], [n], [0, n + 5]):
            with pytest.raises(IndexError):
                r.get_frames(bad_idx)
            with pytest.raises(IndexError):
                r.get_clips([[0, 1], bad_idx])
        assert r.get_frames([]).shape == (0, 3, 48, 64)
        assert indices_of(r.get_frames(np.array([3, 1]))) == [3, 1]
        assert indices_of(r.get_frames(torch.tensor([4, 2]))) == [4, 2]
        with pytest.raises(TypeError):
            r.get_frames([1.5])


def test_threads_give_the_same_frames(videos):
    path, _, _ = videos["h264-g250"]
    idx = [5, 100, 101, 299, 250, 7]
    with open_video(path) as one, open_video(path, num_threads=2) as two, open_video(path, num_threads=0) as auto:
        assert one._stream.codec_context.thread_count == 1
        assert torch.equal(one.get_frames(idx), two.get_frames(idx))
        assert torch.equal(one.get_frames(idx), auto.get_frames(idx))
    with pytest.raises(VidpriorError, match="num_threads"):
        open_video(path, num_threads=-1)


def test_closed_reader_and_pickling(videos):
    path, _, _ = videos["h264-g16"]
    r = open_video(path)
    with pytest.raises(VidpriorError, match="cannot be pickled"):
        pickle.dumps(r)
    r.close()
    r.close()  # idempotent
    with pytest.raises(VidpriorError, match="closed"):
        r.get_frames([0])
    with pytest.raises(RuntimeError), open_video(path) as r2:  # closed when the block raises
        raise RuntimeError("boom")
    assert r2._closed and r2._container is None


def test_backend_names_and_missing_backends(videos, monkeypatch):
    path, _, _ = videos["h264-g16"]
    assert BACKENDS == ("pyav", "torchcodec", "decord")
    assert available_backends()[0] == "pyav"
    with pytest.raises(VidpriorError, match="did you mean 'decord'"):
        open_video(path, backend="decrod")
    monkeypatch.setattr(backends, "_backend_error", lambda b: None if b == "pyav" else "ImportError: not installed")
    for backend, package in [("decord", "pip install decord"), ("torchcodec", "pip install torchcodec")]:
        with pytest.raises(BackendUnavailableError, match=package):
            open_video(path, backend=backend)
        with pytest.raises(BackendUnavailableError):
            probe(path, backend=backend)
    assert issubclass(BackendUnavailableError, ImportError) and issubclass(BackendUnavailableError, VidpriorError)
    assert not issubclass(BackendUnavailableError, DecodeError)  # a broken install stops a run, it is no bad file


# ---------------------------------------------------------------------------------------------------------------
# bad files


def test_every_bad_file_gives_its_reason(bad):
    for path, reason in bad.items():
        with pytest.raises(DecodeError) as info:
            probe(path)
        assert info.value.reason == reason, (path.name, info.value)
        assert info.value.path == str(path)
        with pytest.raises(DecodeError) as info, open_video(path) as r:
            r.get_frames([0])
        assert info.value.reason == reason, (path.name, info.value)


def test_more_truncations(videos, tmp_path):
    cases = {}
    for name in ("vp9-g16", "h264-moov-last-audio", "h264-mkv-audio"):
        with open(videos[name][0], "rb") as f:
            data = f.read()
        p = tmp_path / f"cut_{os.path.basename(videos[name][0])}"
        p.write_bytes(data[: len(data) * 2 // 5])
        cases[p] = TRUNCATED
    with open(videos["vp9-g16"][0], "rb") as f:
        head = f.read(300)  # a WebM cut inside its header
    (tmp_path / "head.webm").write_bytes(head)
    cases[tmp_path / "head.webm"] = TRUNCATED
    (tmp_path / "tiny.mp4").write_bytes(b"\x00\x00")
    cases[tmp_path / "tiny.mp4"] = NO_VIDEO_STREAM
    for path, reason in cases.items():
        with pytest.raises(DecodeError) as info:
            probe(path)
        assert info.value.reason == reason, (path.name, info.value)


def test_decoder_errors_are_decode_errors(videos, monkeypatch):
    path, _, _ = videos["h264-g16"]

    def broken(self):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        yield

    with open_video(path) as r:
        monkeypatch.setattr(PyAVReader, "_frames", broken)
        with pytest.raises(DecodeError) as info:
            r.get_frames([3])
    assert info.value.reason == "decode_error" and "InvalidDataError" in info.value.detail


def test_data_that_stops_decoding_is_truncated(videos, monkeypatch):
    """The decoder puts out nothing after frame 49 (as for a file cut inside its last packets)."""
    path, _, _ = videos["h264-g16"]
    original = PyAVReader._frames

    def frames_until_49(self):
        for i, f in original(self):
            if i >= 50:
                return
            yield i, f

    monkeypatch.setattr(PyAVReader, "_frames", frames_until_49)
    with open_video(path) as r:
        assert indices_of(r.get_frames([10, 49])) == [10, 49]
        with pytest.raises(DecodeError) as info:
            r.get_frames([10, 70])
    assert info.value.reason == TRUNCATED and "frame 70" in info.value.detail


def test_layout_is_channels_last_tchw(videos):
    path, _, _ = videos["h264-g16"]
    with open_video(path) as r:
        x = r.get_frames([1, 2])
    assert x.shape == (2, 3, 48, 64) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.contiguous(), x)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_descriptors_leak(bad, videos):
    path, _, _ = videos["h264-g16"]
    probe(path)  # warm up lazy imports and caches
    before = open_fds()
    for _ in range(10):
        for p in bad:
            with pytest.raises(DecodeError):
                probe(p)
            with pytest.raises(DecodeError):
                open_video(p)
        with pytest.raises(IndexError), open_video(path) as r:
            r.get_frames([10_000])
        r = open_video(path)
        r.get_frames([1])
        r.close()
    assert open_fds() == before


# ---------------------------------------------------------------------------------------------------------------
# DataLoader workers


class _Clips(Dataset):
    def __init__(self, path: str, clips: list[list[int]]) -> None:
        self.path, self.clips = path, clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> torch.Tensor:
        with open_video(self.path) as r:  # opened inside the worker
            return r.get_frames(self.clips[i])


def test_dataloader_workers(videos):
    path, n, _ = videos["h264-g250"]
    rng = random.Random(3)
    clips = [sorted(rng.sample(range(n), 4)) for _ in range(12)]
    loader = DataLoader(_Clips(path, clips), batch_size=3, num_workers=2)
    got = [indices_of(clip) for batch in loader for clip in batch]
    assert got == clips


def test_reader_refuses_use_after_fork(videos, monkeypatch):
    path, _, _ = videos["h264-g16"]
    with open_video(path) as r:
        monkeypatch.setattr(r, "_pid", os.getpid() + 1)  # as if opened in the parent before a fork
        with pytest.raises(VidpriorError, match="inside the DataLoader worker"):
            r.get_frames([0])


# ---------------------------------------------------------------------------------------------------------------
# optional backends (skipped where not installed)


@pytest.mark.parametrize("backend", ["torchcodec", "decord"])
def test_optional_backends(videos, bad, backend):
    module = {"torchcodec": "torchcodec.decoders", "decord": "decord"}[backend]
    pytest.importorskip(module)
    if backend not in available_backends():
        pytest.skip(f"{backend} imports but cannot load")
    for name in [*CORE, "h264-g16-odd", "vp9-g16-odd"]:
        path, n, _ = videos[name]
        with open_video(path, backend=backend) as r, open_video(path) as ref:
            assert isinstance(r, VideoReader)
            assert r.info.num_frames == n and (r.info.width, r.info.height) == (ref.info.width, ref.info.height)
            for label, idx in index_sets(n, seed=5).items():
                frames = r.get_frames(idx)
                assert frames.shape == (len(idx), 3, r.info.height, r.info.width) and frames.dtype == torch.uint8
                assert indices_of(frames) == idx, (name, label)
            clips = multi_view(n)
            assert [indices_of(v) for v in r.get_clips(clips)] == clips
    for path, reason in bad.items():
        with pytest.raises(DecodeError) as info:
            probe(path, backend=backend)
        assert info.value.reason == reason, (path.name, info.value)
