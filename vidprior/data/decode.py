"""Video decoding: exact frames by index, each decoded at most once per request, with a reason for every failure.

Backends: ``"pyav"`` (default: PyAV bundles FFmpeg, nothing else to install), ``"torchcodec"`` (``pip install
torchcodec``; needs the system FFmpeg libraries) and ``"decord"`` (``pip install decord``). All return uint8 RGB
frames as a (T, C, H, W) tensor (torchvision's video layout), in the order asked for. Its memory is channels-last
(``x.is_contiguous(memory_format=torch.channels_last)``): each frame is copied once as decoded (H, W, C), with no
transposing copy; torchvision's uint8 resize is fastest on that layout, and ``.contiguous()`` gives plain NCHW.

How the PyAV reader finds frames without decoding the whole video:

* On open it demuxes the video stream's packets once (no decoding) and keeps their presentation timestamps (sorted:
  presentation order) and which packets are keyframes. Frame ``i`` is the packet with the ``i``-th smallest pts, so
  ``num_frames`` is exact and a decoded frame's pts gives its index, also with B-frames (decode order != pts order).
* A request is decoded in one forward pass over its sorted, unique indices: seek once to the keyframe at or before
  the first one, decode forward, and stop as soon as the last one is out. It keeps decoding forward to the next
  needed frame while that frame is in the same GOP, or when seeking would skip no more than
  :data:`SEEK_SKIP_FRAMES` frames; only a frame behind a later keyframe and farther away than that makes it seek
  again, forward, to that keyframe. So no frame is decoded twice, and a multi-view request (:meth:`get_clips`)
  costs at most one pass from the first needed keyframe to the last needed frame.
* H.264/HEVC packets of frames that are not needed are sent with ``skip_frame=NONREF``: the decoder drops them if
  no other frame references them (most B-frames), which cuts the lead-in from a keyframe to the wanted frames.
* Only the needed frames are converted to RGB.

Counters for tests and profiling: ``reader.frames_decoded`` (frames that came out of the decoder) and
``reader.seeks`` (seeks made to decode).

Threads: ``num_threads=1`` (default) decodes on the calling thread only, which is what DataLoader workers want (one
process per core). ``num_threads>1`` turns on FFmpeg frame + slice threading with that many threads; ``0`` lets
FFmpeg choose. Open readers inside the worker that uses them: a reader cannot be pickled or used after a fork.

Errors: every failure is a :class:`~vidprior.data.errors.DecodeError` with a reason code (never an FFmpeg
exception), except out-of-range indices (``IndexError``) and a missing backend (:class:`BackendUnavailableError`).
A file whose container says it is longer than the bytes on disk (an mp4 box or a Matroska segment running past the
end of the file, an mp4 without its ``moov`` index, fewer packets than the header declares) is ``truncated``.
"""

from __future__ import annotations

import bisect
import functools
import operator
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidprior.data.errors import (
    DECODE_ERROR,
    EMPTY,
    MISSING,
    NO_VIDEO_STREAM,
    NOT_A_FILE,
    TRUNCATED,
    DecodeError,
)
from vidprior.errors import VidpriorError, closest

BACKENDS = ("pyav", "torchcodec", "decord")
_PIP = {"pyav": "av", "torchcodec": "torchcodec", "decord": "decord"}
_MODULE = {"pyav": "av", "torchcodec": "torchcodec.decoders", "decord": "decord"}

#: Keep decoding forward (instead of seeking to a later keyframe) when the seek would skip at most this many frames.
SEEK_SKIP_FRAMES = 4
#: Codecs whose FFmpeg decoders honour ``skip_frame=NONREF`` per packet (others are always fully decoded).
_NONREF_CODECS = frozenset({"h264", "hevc"})


class BackendUnavailableError(VidpriorError, ImportError):
    """The decoding backend asked for is not installed or cannot load."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. ``num_frames`` is exact for the PyAV reader (counted from the packets), ``fps`` the average
    frame rate, ``duration`` in seconds (first to last frame plus one frame), ``codec`` FFmpeg's codec name."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str


# ---------------------------------------------------------------------------------------------------------------
# backends


@functools.cache
def _backend_error(backend: str) -> str | None:
    """None if the backend imports, else why not."""
    try:
        __import__(_MODULE[backend])
    except Exception as e:  # ImportError, or e.g. torchcodec's RuntimeError when FFmpeg libraries are missing
        return f"{type(e).__name__}: {e}"
    return None


def available_backends() -> list[str]:
    """The backends that can be imported here, in :data:`BACKENDS` order."""
    return [b for b in BACKENDS if _backend_error(b) is None]


def _require_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise VidpriorError(f"backend={backend!r}: expected one of {BACKENDS}{closest(str(backend), BACKENDS)}")
    error = _backend_error(backend)
    if error is not None:
        hint = f"pip install {_PIP[backend]}"
        if backend == "torchcodec":
            hint += " (it also needs the system FFmpeg libraries, e.g. `apt-get install ffmpeg`)"
        raise BackendUnavailableError(
            f"video backend {backend!r} is not available ({error}); install it with `{hint}` "
            f"or use backend='pyav'. Available here: {available_backends()}"
        )


# ---------------------------------------------------------------------------------------------------------------
# file checks shared by all backends


def check_file(path: str | os.PathLike) -> int:
    """Raise ``DecodeError`` for a missing path, a non-regular file or an empty file; return the size in bytes."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DecodeError(path, MISSING, "no such file") from None
    except NotADirectoryError:
        raise DecodeError(path, MISSING, "a parent of the path is not a directory") from None
    except OSError as e:
        raise DecodeError(path, DECODE_ERROR, f"cannot stat: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise DecodeError(path, NOT_A_FILE, kind)
    if st.st_size == 0:
        raise DecodeError(path, EMPTY, "0 bytes")
    return st.st_size


_ISO_TOP_BOXES = frozenset(
    b"ftyp moov mdat free skip wide pnot uuid meta moof mfra sidx styp emsg prft pdin jumb".split()
)


def _iso_truncation(f, size: int) -> str | None:
    """For an ISO-BMFF file (mp4/mov/m4v): the first top-level box that runs past the end of the file."""
    pos, count = 0, 0
    while pos < size and count < 1_000_000:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return f"box header at byte {pos} is cut ({size} bytes)"
        box, kind = int.from_bytes(head[:4], "big"), head[4:8]
        if not all(48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b" _-@\xa9" for c in kind):
            return None  # not a box: leave the verdict to the demuxer
        if box == 1:
            if len(head) < 16:
                return f"box header at byte {pos} is cut ({size} bytes)"
            box = int.from_bytes(head[8:16], "big")
        elif box == 0:
            return None  # the last box runs to the end of the file by definition
        if box < 8:
            return None
        if pos + box > size:
            return f"'{kind.decode('latin-1')}' box ends at byte {pos + box}, the file has {size} bytes"
        pos += box
        count += 1
    return None


def _ebml_vint(data: bytes, pos: int, *, is_id: bool = False) -> tuple[int, int, bool] | None:
    """(value, length, all-ones) of the EBML variable-size integer at ``pos``."""
    if pos >= len(data) or data[pos] == 0:
        return None
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if pos + length > len(data):
        return None
    raw = int.from_bytes(data[pos : pos + length], "big")
    value = raw if is_id else raw & ((1 << (7 * length)) - 1)
    return value, length, value == (1 << (7 * length)) - 1


def _matroska_truncation(f, size: int) -> str | None:
    """For Matroska/WebM: a Segment whose declared size runs past the end of the file."""
    f.seek(0)
    data = f.read(4096)
    header = _ebml_vint(data, 4)
    if header is None:
        return None
    pos = 4 + header[1] + header[0]  # skip the EBML header element
    seg_id = _ebml_vint(data, pos, is_id=True)
    if seg_id is None or seg_id[0] != 0x18538067:
        return None
    seg_size = _ebml_vint(data, pos + seg_id[1])
    if seg_size is None or seg_size[2]:
        return None  # unknown size (live streams): cannot tell
    end = pos + seg_id[1] + seg_size[1] + seg_size[0]
    if end > size:
        return f"the Matroska segment ends at byte {end}, the file has {size} bytes"
    return None


def _container_kind(head: bytes) -> str | None:
    if len(head) >= 8 and head[4:8] in _ISO_TOP_BOXES:
        return "iso"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def container_truncation(path: str | os.PathLike, size: int | None = None) -> str | None:
    """Why the container (mp4 family or Matroska/WebM) is cut short, from its box sizes; None if it looks whole or
    is another format. Reads a few bytes per top-level box, no demuxing."""
    path = os.fspath(path)
    size = os.path.getsize(path) if size is None else size
    try:
        with open(path, "rb") as f:
            kind = _container_kind(f.read(8))
            if kind == "iso":
                return _iso_truncation(f, size)
            if kind == "matroska":
                return _matroska_truncation(f, size)
    except OSError as e:
        raise DecodeError(path, DECODE_ERROR, f"cannot read: {e}") from None
    return None


def open_container(path: str):
    """``av.open`` for reading, with FFmpeg's errors turned into ``DecodeError`` reasons (run :func:`check_file` and
    :func:`container_truncation` first)."""
    import av

    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        with open(path, "rb") as f:
            kind = _container_kind(f.read(8))
        if kind is not None:  # a real mp4/Matroska start but no usable header (e.g. no moov): cut before its index
            raise DecodeError(path, TRUNCATED, f"the container header is incomplete ({e})") from None
        raise DecodeError(path, NO_VIDEO_STREAM, f"not a media file FFmpeg can read ({e})") from None
    except av.error.FileNotFoundError as e:
        raise DecodeError(path, MISSING, str(e)) from None
    except av.error.IsADirectoryError as e:
        raise DecodeError(path, NOT_A_FILE, str(e)) from None
    except (av.error.FFmpegError, OSError, ValueError, UnicodeError) as e:
        raise DecodeError(path, DECODE_ERROR, f"cannot open: {type(e).__name__}: {e}") from None


def video_stream(container, path: str):
    """The container's video stream (the first that is not cover art); ``DecodeError`` ``no_video_stream`` if none."""
    import av

    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise DecodeError(path, NO_VIDEO_STREAM, f"streams: {', '.join(kinds)}")
    return streams[0]


def precheck(path: str) -> int:
    """:func:`check_file` and :func:`container_truncation` (``DecodeError`` ``truncated``); returns the size."""
    size = check_file(path)
    why = container_truncation(path, size)
    if why is not None:
        raise DecodeError(path, TRUNCATED, why)
    return size


def _as_indices(indices: Sequence[int], num_frames: int, path: str) -> list[int]:
    if isinstance(indices, torch.Tensor | np.ndarray):
        indices = indices.reshape(-1).tolist()
    out = []
    for i in indices:
        i = operator.index(i)
        if not 0 <= i < num_frames:
            raise IndexError(f"frame index {i} out of range [0, {num_frames}) for {path}")
        out.append(i)
    return out


# ---------------------------------------------------------------------------------------------------------------
# readers


class VideoReader(ABC):
    """An open video. Use as a context manager (the file is closed on exit, also after errors).

    Attributes: ``info`` (:class:`VideoInfo`), ``path``, ``frames_decoded`` and ``seeks`` (counters; exact for the
    PyAV reader, approximate or 0 for the others).
    """

    info: VideoInfo

    def __init__(self, path: str) -> None:
        self.path = path
        self.frames_decoded = 0
        self.seeks = 0
        self._pid = os.getpid()
        self._closed = False

    # subclasses implement: decode sorted unique indices -> {index: (H, W, 3) uint8 RGB array or tensor}
    @abstractmethod
    def _decode(self, indices: list[int]) -> dict[int, Any]: ...

    @abstractmethod
    def _close(self) -> None: ...

    def _check_usable(self) -> None:
        if self._closed:
            raise VidpriorError(f"{self.path}: the video reader is closed")
        if os.getpid() != self._pid:
            raise VidpriorError(
                f"{self.path}: a video reader opened in process {self._pid} was used in process {os.getpid()}; "
                "open videos inside the DataLoader worker (in Dataset.__getitem__), never before the fork"
            )

    def _fetch(self, unique_sorted: list[int]) -> dict[int, Any]:
        if not unique_sorted:
            return {}
        try:
            return self._decode(unique_sorted)
        except (DecodeError, VidpriorError, IndexError):
            raise
        except Exception as e:  # FFmpeg / backend errors: never let them escape raw
            raise DecodeError(self.path, DECODE_ERROR, f"{type(e).__name__}: {e}") from e

    def _stack(self, indices: list[int], frames: dict[int, Any]) -> torch.Tensor:
        h, w = self.info.height, self.info.width
        out = torch.empty((len(indices), h, w, 3), dtype=torch.uint8)
        for j, i in enumerate(indices):
            f = frames[i]
            t = f if isinstance(f, torch.Tensor) else torch.from_numpy(f)
            if t.shape != (h, w, 3):
                detail = f"frame {i} has shape {tuple(t.shape)} (H, W, C), expected ({h}, {w}, 3)"
                raise DecodeError(self.path, DECODE_ERROR, detail)
            out[j].copy_(t)
        return out.permute(0, 3, 1, 2)  # (T, C, H, W) view of channels-last memory: no transposing copy

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` as uint8 RGB (len(indices), 3, H, W) (channels-last memory), in the given order (repeats
        and any order are fine). Indices outside [0, num_frames) raise ``IndexError``."""
        self._check_usable()
        idx = _as_indices(indices, self.info.num_frames, self.path)
        return self._stack(idx, self._fetch(sorted(set(idx))))

    def get_clips(self, clips: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """One (len(clip), 3, H, W) tensor per clip; the union of all indices is decoded once, in one forward pass."""
        self._check_usable()
        lists = [_as_indices(c, self.info.num_frames, self.path) for c in clips]
        frames = self._fetch(sorted({i for c in lists for i in c}))
        return [self._stack(c, frames) for c in lists]

    def close(self) -> None:
        """Release the file (idempotent)."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:
        raise VidpriorError(
            f"{self.path}: video readers cannot be pickled or sent to another process; open the video where it is read"
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, {self.info.num_frames} frames, {self.info.width}x{self.info.height})"
        )


class PyAVReader(VideoReader):
    """The default reader (PyAV). See the module docstring for how frames are located and decoded."""

    def __init__(self, path: str, *, num_threads: int = 1) -> None:
        import av

        super().__init__(path)
        self._av = av
        self._container = None
        self._packets = None  # live demux generator: the decoder's position, or None (must seek)
        self._frame_iter = None  # (index, frame) generator over self._packets
        self._ended = False
        self._pos = -1  # index of the last frame the decoder put out (valid while _packets is not None)
        self._wanted: set[int] = set()
        self._skipping = False
        self._reformatter = av.video.reformatter.VideoReformatter()
        size = precheck(path)
        self._container = open_container(path)
        try:
            self._setup(num_threads, size)
        except BaseException:
            self._closed = True
            self._container.close()
            raise

    def _setup(self, num_threads: int, size: int) -> None:
        stream = self._stream = video_stream(self._container, self.path)
        cc = stream.codec_context
        self._sws_threads = num_threads  # swscale's own default is one thread per core
        if num_threads == 1:
            cc.thread_count = 1
        else:
            cc.thread_type = "AUTO"
            cc.thread_count = max(0, num_threads)
        self._use_nonref = cc.name in _NONREF_CODECS
        self._build_index(size)
        self.info = self._make_info()

    def _build_index(self, size: int) -> None:
        """Demux (no decode) the video packets once: frame order, keyframes, and their timestamps."""
        path, stream = self.path, self._stream
        entries: dict[int, bool] = {}  # pts -> keyframe
        packets = 0
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                packets += 1
                pts = packet.pts
                if pts is None or packet.is_discard:  # no timestamp, or dropped by an edit list: no frame of its own
                    continue
                entries[pts] = packet.is_keyframe or entries.get(pts, False)
        except self._av.error.FFmpegError as e:
            raise DecodeError(path, DECODE_ERROR, f"demuxing failed after {packets} packets: {e}") from None
        declared = stream.frames
        if not entries:
            detail = f"the header declares {declared} frames" if declared else "the video stream holds no frames"
            raise DecodeError(path, TRUNCATED, f"no video packets ({detail}; {size} bytes)")
        if declared and packets < declared:
            raise DecodeError(path, TRUNCATED, f"{packets} of the {declared} frames the header declares are present")
        self._pts = sorted(entries)
        self._index = {p: i for i, p in enumerate(self._pts)}
        self._keyframes = [i for i, p in enumerate(self._pts) if entries[p]] or [0]

    def _make_info(self) -> VideoInfo:
        stream, n = self._stream, len(self._pts)
        tb = float(stream.time_base) if stream.time_base else 0.0
        span = (self._pts[-1] - self._pts[0]) * tb
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else ((n - 1) / span if span > 0 else 0.0)
        duration = span + (1.0 / fps if fps > 0 else 0.0)
        cc = stream.codec_context
        width, height = cc.width, cc.height
        if not width or not height:
            raise DecodeError(self.path, DECODE_ERROR, "the video stream has no frame size")
        return VideoInfo(self.path, n, fps, width, height, duration, cc.name or "unknown")

    # -- decoding ----------------------------------------------------------------------------------------------

    def _keyframe_before(self, i: int) -> int:
        """The last keyframe at or before frame ``i`` (the first keyframe if there is none before)."""
        j = bisect.bisect_right(self._keyframes, i) - 1
        return self._keyframes[max(j, 0)]

    def _seek(self, keyframe: int) -> None:
        self._stop()
        # FFmpeg's demuxers (mov included) seek on presentation timestamps: this lands on the keyframe itself
        self._container.seek(self._pts[keyframe], stream=self._stream, backward=True)
        self._stream.codec_context.flush_buffers()
        self.seeks += 1
        self._packets = self._container.demux(self._stream)
        self._frame_iter = self._frames()
        self._pos = keyframe - 1  # nothing of this GOP is out yet

    def _must_seek(self, target: int) -> bool:
        if self._packets is None or target <= self._pos:
            return True
        k = self._keyframe_before(target)
        return k > self._pos + 1 + SEEK_SKIP_FRAMES

    def _frames(self):
        """Yield (index, frame) from the current position until the stream ends."""
        cc = self._stream.codec_context
        index = self._index
        for packet in self._packets:
            if self._use_nonref and packet.pts is not None:
                i = index.get(packet.pts)
                skip = i is not None and i not in self._wanted
                if skip != self._skipping:
                    cc.skip_frame = "NONREF" if skip else "DEFAULT"
                    self._skipping = skip
            for frame in packet.decode():
                self.frames_decoded += 1
                i = index.get(frame.pts) if frame.pts is not None else None
                if i is None:  # a timestamp the index does not know: take the nearest known frame after the last
                    i = self._pos + 1
                yield i, frame

    def _decode(self, indices: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        h, w = self.info.height, self.info.width
        self._wanted = set(indices)
        try:
            for target in indices:
                attempts = 0
                while True:
                    if attempts or self._must_seek(target):
                        k = self._keyframe_before(target)
                        for _ in range(attempts - 1):  # a second retry starts one keyframe earlier
                            k = self._keyframe_before(k - 1) if k > 0 else k
                        self._seek(k)
                    frame = self._advance_to(target)
                    if frame is not None:
                        out[target] = self._rgb(frame, h, w)
                        self._wanted.discard(target)
                        break
                    # not produced: a frame skipped earlier as unneeded, a seek that landed late, or damaged data
                    attempts += 1
                    if self._ended and attempts > 1:
                        raise DecodeError(
                            self.path,
                            TRUNCATED,
                            f"frame {target} of {self.info.num_frames} does not decode: the decoded data ends "
                            f"{'before it' if self._pos < 0 else f'at frame {self._pos}'}",
                        )
                    if attempts > 2:
                        raise DecodeError(self.path, DECODE_ERROR, f"the decoder does not produce frame {target}")
        finally:
            self._wanted = set()
        return out

    def _advance_to(self, target: int):
        """Decode forward to frame ``target``; the frame, or None if the decoder went past it or the stream ended."""
        self._ended = False
        for i, frame in self._frame_iter:
            self._pos = i
            if i == target:
                return frame
            if i > target:
                return None
        self._ended = True
        self._stop()  # at the end: the next request must seek
        return None

    def _rgb(self, frame, h: int, w: int) -> np.ndarray:
        # one reformatter (swscale context) for all frames: a new one per frame costs more than the conversion
        # (a size change inside the stream is scaled to the header's size)
        return self._reformatter.reformat(frame, w, h, "rgb24", threads=self._sws_threads).to_ndarray()

    def _stop(self) -> None:
        if self._frame_iter is not None:
            self._frame_iter.close()
            self._frame_iter = None
        if self._packets is not None:
            self._packets.close()
            self._packets = None

    def _close(self) -> None:
        self._stop()
        if self._container is not None:
            self._container.close()
            self._container = None


class TorchCodecReader(VideoReader):
    """torchcodec's ``VideoDecoder`` (exact seek mode). ``pip install torchcodec`` plus system FFmpeg 4-7."""

    def __init__(self, path: str, *, num_threads: int = 1) -> None:
        super().__init__(path)
        from torchcodec.decoders import VideoDecoder

        precheck(path)
        self._decoder = None
        try:
            try:
                self._decoder = VideoDecoder(
                    path, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=max(0, num_threads)
                )
            except TypeError:  # older torchcodec without some of these arguments
                self._decoder = VideoDecoder(path, dimension_order="NHWC")
            md = self._decoder.metadata
            n = int(getattr(md, "num_frames", None) or len(self._decoder))
            fps = float(getattr(md, "average_fps", None) or 0.0)
            width, height = int(md.width), int(md.height)
            duration = float(getattr(md, "duration_seconds", None) or (n / fps if fps else 0.0))
            codec = str(getattr(md, "codec", None) or "unknown")
        except DecodeError:
            raise
        except Exception as e:
            self._decoder = None
            _raise_classified(path, e)
        if n <= 0:
            raise DecodeError(path, TRUNCATED, "no video frames")
        self.info = VideoInfo(path, n, fps, width, height, duration, codec)

    def _decode(self, indices: list[int]) -> dict[int, torch.Tensor]:
        batch = self._decoder.get_frames_at(indices=indices)
        data = batch.data if hasattr(batch, "data") else batch
        self.frames_decoded += len(indices)
        return {i: data[j] for j, i in enumerate(indices)}

    def _close(self) -> None:
        self._decoder = None


class DecordReader(VideoReader):
    """decord's ``VideoReader`` on the CPU. ``pip install decord``."""

    def __init__(self, path: str, *, num_threads: int = 1) -> None:
        super().__init__(path)
        import decord

        precheck(path)
        self._vr = None
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=max(0, num_threads))
            n = len(self._vr)
            fps = float(self._vr.get_avg_fps())
        except Exception as e:
            self._vr = None
            _raise_classified(path, e)
        if n <= 0:
            raise DecodeError(path, TRUNCATED, "no video frames")
        width, height, codec = _light_probe(path)
        self.info = VideoInfo(path, n, fps, width, height, n / fps if fps else 0.0, codec)

    def _decode(self, indices: list[int]) -> dict[int, np.ndarray]:
        frames = self._vr.get_batch(indices).asnumpy()
        self.frames_decoded += len(indices)
        return {i: frames[j] for j, i in enumerate(indices)}

    def _close(self) -> None:
        self._vr = None


def _light_probe(path: str) -> tuple[int, int, str]:
    """Width, height and codec name from the container header (PyAV, no demuxing)."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as c:
            s = c.streams.video[0]
            return s.codec_context.width, s.codec_context.height, s.codec_context.name or "unknown"
    except Exception as e:
        _raise_classified(path, e)
        raise  # unreachable


def _raise_classified(path: str, error: Exception) -> None:
    """Another backend failed on ``path``: give the reason PyAV finds, or decode_error if PyAV opens it fine."""
    try:
        PyAVReader(path).close()
    except DecodeError as e:
        raise DecodeError(path, e.reason, f"{e.detail}; backend: {type(error).__name__}: {error}") from error
    raise DecodeError(path, DECODE_ERROR, f"{type(error).__name__}: {error}") from error


_READERS = {"pyav": PyAVReader, "torchcodec": TorchCodecReader, "decord": DecordReader}


def open_video(path: str | os.PathLike, *, backend: str = "pyav", num_threads: int = 1) -> VideoReader:
    """Open a video for frame access; use it as a context manager. Raises ``DecodeError`` (with a reason code) for
    unreadable files and :class:`BackendUnavailableError` if the backend is not installed."""
    _require_backend(backend)
    if not isinstance(num_threads, int) or num_threads < 0:
        raise VidpriorError(f"num_threads={num_threads!r}: expected 1 (default), more, or 0 (FFmpeg chooses)")
    return _READERS[backend](os.fspath(path), num_threads=num_threads)


def probe(path: str | os.PathLike, *, backend: str = "pyav") -> VideoInfo:
    """Open the video, count its frames, read its size and duration, and decode its first keyframe (so a stream the
    decoder cannot read fails here). Raises ``DecodeError`` with the reason."""
    with open_video(path, backend=backend) as reader:
        first = reader._keyframes[0] if isinstance(reader, PyAVReader) else 0
        reader.get_frames([first])
        return reader.info
