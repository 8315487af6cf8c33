"""Synthetic test videos whose frames carry their own index, and damaged files with the reason each must give.

Every frame of :func:`write_video` shows a 4 x 4 grid of flat cells over the whole frame: cell 0 is red, cell 1
white, cell 2 black (references), cells 3-15 hold the 13 bits of the frame index (white = 1), least significant
bit first. The cells are large and flat, so the code survives lossy compression, chroma subsampling and down-scaling
to about 32 pixels; :func:`read_index` reads it back from a decoded (C, H, W) uint8 RGB frame and checks the channel
order on the red cell. ``texture=True`` adds a moving texture over the whole frame (realistic encoder and decoder
load for benchmarks; the code still reads back).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

GRID = 4
BITS = GRID * GRID - 3
MAX_FRAMES = 1 << BITS
LOW, HIGH = 40, 215  # black and white levels (room for the texture on top)

# reason codes, repeated here so the fixtures do not import the code under test
MISSING, NOT_A_FILE, EMPTY, NO_VIDEO_STREAM, TRUNCATED = (
    "missing",
    "not_a_file",
    "empty",
    "no_video_stream",
    "truncated",
)


def _cells(width: int, height: int) -> list[tuple[slice, slice, slice, slice]]:
    """Per cell: (rows, cols) of the whole cell and (rows, cols) of its centre half (where it is read)."""
    out = []
    for k in range(GRID * GRID):
        r, c = divmod(k, GRID)
        y0, y1 = r * height // GRID, (r + 1) * height // GRID
        x0, x1 = c * width // GRID, (c + 1) * width // GRID
        cy0, cy1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
        cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        out.append((slice(y0, y1), slice(x0, x1), slice(cy0, max(cy1, cy0 + 1)), slice(cx0, max(cx1, cx0 + 1))))
    return out


def barcode_frame(index: int, width: int, height: int) -> np.ndarray:
    """The (H, W, 3) uint8 RGB frame that encodes ``index``."""
    if not 0 <= index < MAX_FRAMES:
        raise ValueError(f"index {index} does not fit in {BITS} bits")
    img = np.full((height, width, 3), LOW, np.uint8)
    cells = _cells(width, height)
    ys, xs, _, _ = cells[0]
    img[ys, xs] = (HIGH, LOW, LOW)  # red: checks the channel order
    ys, xs, _, _ = cells[1]
    img[ys, xs] = HIGH
    for bit in range(BITS):
        if index >> bit & 1:
            ys, xs, _, _ = cells[3 + bit]
            img[ys, xs] = HIGH
    return img


def read_index(frame_chw_uint8: torch.Tensor | np.ndarray) -> int:
    """The index encoded in a decoded frame (3, H, W) uint8 RGB; ``ValueError`` if it is not a barcode frame."""
    x = torch.as_tensor(np.asarray(frame_chw_uint8) if isinstance(frame_chw_uint8, np.ndarray) else frame_chw_uint8)
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) frame, got shape {tuple(x.shape)}")
    x = x.float()
    cells = _cells(x.shape[2], x.shape[1])

    def mean(k: int, channel: int | None = None) -> float:
        _, _, cy, cx = cells[k]
        region = x[:, cy, cx] if channel is None else x[channel, cy, cx]
        return float(region.mean())

    white, black = mean(1), mean(2)
    if white - black < 60:
        raise ValueError(f"not a barcode frame (white {white:.0f}, black {black:.0f})")
    if mean(0, 0) - mean(0, 2) < 60:
        raise ValueError("the red reference cell is not red: channels are not in RGB order")
    threshold = (white + black) / 2
    return sum(1 << bit for bit in range(BITS) if mean(3 + bit) > threshold)


def _texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture plus fine noise, (2H, 2W) int16 around 0, panned across the frames."""
    rng = np.random.default_rng(seed)
    h2, w2 = 2 * height, 2 * width
    coarse = rng.integers(-30, 31, (h2 // 8 + 1, w2 // 8 + 1)).astype(np.int16)
    smooth = np.kron(coarse, np.ones((8, 8), np.int16))[:h2, :w2]
    fine = rng.integers(-6, 7, (h2, w2)).astype(np.int16)
    return smooth + fine


def _codec_options(codec: str, gop: int, bframes: bool, crf: int | None) -> dict[str, str]:
    if codec == "libx264":
        return {
            "preset": "veryfast",
            "crf": str(18 if crf is None else crf),
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",  # no extra keyframes on scene cuts: keyframes exactly every `gop` frames
            "bf": "3" if bframes else "0",
        }
    if codec in ("libvpx-vp9", "libvpx"):
        return {
            "deadline": "realtime",
            "cpu-used": "8",
            "crf": str(30 if crf is None else crf),
            "b": "0",
            "g": str(gop),
            "keyint_min": str(gop),
        }
    return {"g": str(gop)}


def write_video(
    path: str | os.PathLike,
    num_frames: int,
    *,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    codec: str = "libx264",
    gop: int = 16,
    pix_fmt: str = "yuv420p",
    bframes: bool = True,
    keyframes: Sequence[int] | None = None,
    texture: bool = False,
    audio: bool = False,
    crf: int | None = None,
    faststart: bool = True,
) -> Path:
    """Write a video whose frame ``i`` carries the barcode of ``i`` (see :func:`read_index`).

    ``gop``: keyframe interval (fixed: no scene-cut keyframes). ``keyframes``: force keyframes at these frames as well
    (variable GOP; pass a large ``gop`` to have only these). ``bframes``: x264 B-frames (presentation order differs
    from decode order). Odd sizes need ``pix_fmt="yuv444p"`` with libx264 (4:2:0 H.264 needs even sizes); VP9 takes
    odd sizes in 4:2:0. ``audio``: add an AAC (mp4/mkv) or Opus (webm) track. ``faststart``: mp4 index (moov) at the
    front, as in downloaded data sets.
    """
    path = Path(path)
    if codec == "libx264" and pix_fmt == "yuv420p" and (width % 2 or height % 2):
        raise ValueError(f"libx264 with yuv420p needs even sizes, got {width}x{height}: use pix_fmt='yuv444p'")
    forced = set(keyframes or ())
    options = {"movflags": "+faststart"} if faststart and path.suffix in (".mp4", ".mov", ".m4v") else {}
    tex = _texture(width, height) if texture else None
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        stream.options = _codec_options(codec, gop, bframes, crf)
        astream = None
        if audio:
            acodec = "libopus" if path.suffix == ".webm" else "aac"
            astream = container.add_stream(acodec, rate=48000 if acodec == "libopus" else 16000)
            astream.layout = "mono"
            audio_format = "flt" if acodec == "libopus" else "fltp"
        samples_done = 0
        for i in range(num_frames):
            img = barcode_frame(i, width, height)
            if tex is not None:
                dy, dx = (3 * i) % height, (5 * i) % width
                img = np.clip(img.astype(np.int16) + tex[dy : dy + height, dx : dx + width, None], 0, 255)
                img = img.astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if i in forced:
                frame.pict_type = av.video.frame.PictureType.I
            for packet in stream.encode(frame):
                container.mux(packet)
            if astream is not None:
                rate = astream.codec_context.sample_rate
                frame_size = astream.codec_context.frame_size or 1024
                while samples_done < (i + 1) * rate // fps:
                    t = (samples_done + np.arange(frame_size)) / rate
                    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                    aframe = av.AudioFrame.from_ndarray(tone, format=audio_format, layout="mono")  # mono: same shape
                    aframe.sample_rate, aframe.pts, aframe.time_base = rate, samples_done, Fraction(1, rate)
                    for packet in astream.encode(aframe):
                        container.mux(packet)
                    samples_done += frame_size
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            for packet in astream.encode():
                container.mux(packet)
    return path


def write_audio_only(path: str | os.PathLike, seconds: float = 1.0) -> Path:
    """A valid container (mp4 with AAC) that has no video stream."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        n, frame_size = int(seconds * 16000), 1024
        for start in range(0, n, frame_size):
            t = (start + np.arange(frame_size)) / 16000
            data = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, Fraction(1, 16000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mp4_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level ISO-BMFF boxes of an mp4 as (type, start, end) byte offsets."""
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        boxes.append((kind, pos, pos + size))
        pos += size
    return boxes


_SOURCE: bytes | None = None


def _source_bytes() -> bytes:
    """A real 60-frame H.264 mp4 (moov first), made once per process."""
    global _SOURCE
    if _SOURCE is None:
        with tempfile.TemporaryDirectory() as tmp:
            p = write_video(Path(tmp) / "source.mp4", 60, width=96, height=64, gop=16, texture=True)
            _SOURCE = p.read_bytes()
    return _SOURCE


def corrupt_files(directory: str | os.PathLike) -> dict[Path, str]:
    """Make damaged files in ``directory``; return {path: the reason code it must give}.

    zero bytes (empty); the first 40 % of a real mp4 whose index is at the front (truncated: header intact, frame data
    cut); a header-only mp4 (ftyp + moov and no frame data at all: truncated); seeded random bytes named .mp4, a text
    file named .mp4 and an audio-only mp4 (no_video_stream); a path that does not exist (missing); a directory named
    like a video (not_a_file).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    data = _source_bytes()
    out: dict[Path, str] = {}

    p = d / "empty.mp4"
    p.write_bytes(b"")
    out[p] = EMPTY

    p = d / "truncated.mp4"
    p.write_bytes(data[: int(len(data) * 0.4)])
    out[p] = TRUNCATED

    moov_end = next(end for kind, _, end in mp4_boxes(data) if kind == b"moov")
    p = d / "header_only.mp4"
    p.write_bytes(data[:moov_end])
    out[p] = TRUNCATED

    p = d / "random.mp4"
    p.write_bytes(np.random.default_rng(1234).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    out[p] = NO_VIDEO_STREAM

    p = d / "text.mp4"
    p.write_text("this is not a video\n" * 50)
    out[p] = NO_VIDEO_STREAM

    p = d / "audio_only.mp4"
    write_audio_only(p)
    out[p] = NO_VIDEO_STREAM

    p = d / "missing.mp4"
    out[p] = MISSING

    p = d / "folder.mp4"
    p.mkdir(exist_ok=True)
    out[p] = NOT_A_FILE
    return out


def write_trimmed_mp4(src: str | os.PathLike, dst: str | os.PathLike, start_frame: int) -> Path:
    """Cut ``src`` (an mp4) at frame ``start_frame`` by stream copy, as ``ffmpeg -ss T -i src -c copy dst`` does:
    the packets from the keyframe before the cut on are copied unchanged and re-timed so that the cut frame is at
    time 0; the muxer then writes an edit list, and the packets before the cut (the keyframe included) are in the
    file but flagged "discard" when read back."""
    dst = Path(dst)
    with av.open(str(src)) as ic:
        stream = ic.streams.video[0]
        packets = [p for p in ic.demux(stream) if p.size]
        order = sorted(p.pts for p in packets)
        cut = order[start_frame]
        keyframe = max(p.pts for p in packets if p.is_keyframe and p.pts <= cut)
        with av.open(str(dst), "w") as oc:
            out = oc.add_stream_from_template(stream)
            started = False
            for p in packets:  # decode order
                started = started or (p.is_keyframe and p.pts == keyframe)
                if started:
                    p.pts -= cut
                    p.dts -= cut
                    p.stream = out
                    oc.mux(p)
    return dst


def write_duplicate_pts_mkv(dst: str | os.PathLike, num_frames: int = 40) -> Path:
    """A Matroska file whose frames come in pairs that share one timestamp (``i // 2`` frame periods), as when a
    muxer's time base is too coarse for the frame rate. Sequential decoding gives all ``num_frames`` barcode frames in
    order."""
    dst = Path(dst)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_video(Path(tmp) / "src.mkv", num_frames, gop=10, bframes=False)
        with av.open(str(src)) as ic:
            stream = ic.streams.video[0]
            packets = [p for p in ic.demux(stream) if p.size]
            with av.open(str(dst), "w") as oc:
                out = oc.add_stream_from_template(stream)
                for i, p in enumerate(packets):
                    p.stream = out
                    p.time_base = Fraction(1, 1000)
                    p.pts = p.dts = (i // 2) * 80
                    p.duration = 40
                    oc.mux(p)
    return dst


def sequential_indices(path: str | os.PathLike) -> list[int]:
    """The barcode index of every frame of a plain sequential PyAV decode (the reference for frame-exactness)."""
    with av.open(str(path)) as c:
        return [read_index(f.to_ndarray(format="rgb24").transpose(2, 0, 1)) for f in c.decode(video=0)]


def write_image(path: str | os.PathLike, fmt: str) -> Path:
    """A small real image (``fmt`` "PNG" or "JPEG") at ``path``, whatever its suffix."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(barcode_frame(3, 64, 48)).save(path, format=fmt)
    return path
