"""Video decoding: exact frames by index, each decoded at most once per request, with a reason for every failure.

This module is the entry point (:func:`open_video`, :func:`probe`); the parts live in focused modules:

* :mod:`vidprior.data.containers`: checks every file gets first (missing, empty, a still image, a cut container).
* :mod:`vidprior.data.reader`: :class:`VideoReader`, the interface every backend implements, and :class:`VideoInfo`.
* :mod:`vidprior.data.pyav_reader`: the default reader and how it finds frames (edit lists, duplicate timestamps,
  seeking, skipped non-reference frames).
* :mod:`vidprior.data.backends`: the backend table (``"pyav"`` default: PyAV bundles FFmpeg, nothing else to
  install; ``"torchcodec"``; ``"decord"``) and :func:`register_backend` for another one.

All backends return uint8 RGB frames as a (T, C, H, W) tensor (torchvision's video layout), in the order asked for.
Its memory is channels-last (``x.is_contiguous(memory_format=torch.channels_last)``): each frame is copied once as
decoded (H, W, C), with no transposing copy; torchvision's uint8 resize is fastest on that layout, and
``.contiguous()`` gives plain NCHW.

Threads: ``num_threads=1`` (default) decodes on the calling thread only, which is what DataLoader workers want (one
process per core). ``num_threads>1`` turns on FFmpeg frame + slice threading with that many threads; ``0`` lets
FFmpeg choose. Open readers inside the worker that uses them: a reader cannot be pickled or used after a fork.

Errors: every failure is a :class:`~vidprior.data.errors.DecodeError` with a reason code (never an FFmpeg
exception), except out-of-range indices (``IndexError``) and a missing backend (:class:`BackendUnavailableError`).
A file whose container says it is longer than the bytes on disk (an mp4 box or a Matroska segment running past the
end of the file, an mp4 without its ``moov`` index, fewer packets than the header declares) is ``truncated``; a
still image named like a video is ``no_video_stream``.
"""

from __future__ import annotations

import os

from vidprior.data.backends import (
    BACKEND_TABLE,
    BACKENDS,
    Backend,
    BackendUnavailableError,
    DecordReader,
    TorchCodecReader,
    available_backends,
    backend_names,
    check_backend,
    register_backend,
)
from vidprior.data.containers import check_file, container_truncation, open_container, precheck, video_stream
from vidprior.data.pyav_reader import SEEK_SKIP_FRAMES, PyAVReader
from vidprior.data.reader import VideoInfo, VideoReader
from vidprior.errors import VidpriorError

__all__ = [
    "BACKENDS",
    "BACKEND_TABLE",
    "SEEK_SKIP_FRAMES",
    "Backend",
    "BackendUnavailableError",
    "DecordReader",
    "PyAVReader",
    "TorchCodecReader",
    "VideoInfo",
    "VideoReader",
    "available_backends",
    "backend_names",
    "check_backend",
    "check_file",
    "container_truncation",
    "open_container",
    "open_video",
    "precheck",
    "probe",
    "register_backend",
    "video_stream",
]


def open_video(path: str | os.PathLike, *, backend: str = "pyav", num_threads: int = 1) -> VideoReader:
    """Open a video for frame access; use it as a context manager. Raises ``DecodeError`` (with a reason code) for
    unreadable files and :class:`BackendUnavailableError` if the backend is not installed."""
    check_backend(backend)
    if not isinstance(num_threads, int) or num_threads < 0:
        raise VidpriorError(f"num_threads={num_threads!r}: expected 1 (default), more, or 0 (FFmpeg chooses)")
    return BACKEND_TABLE[backend].opener(os.fspath(path), num_threads=num_threads)


def probe(path: str | os.PathLike, *, backend: str = "pyav") -> VideoInfo:
    """Open the video, count its frames, read its size and duration, and decode its first, middle and last frames
    the way training reads them (so a stream the decoder cannot read, an edit list whose first frames do not decode,
    or data cut before the last frame fails here). Raises ``DecodeError`` with the reason."""
    with open_video(path, backend=backend) as reader:
        n = reader.info.num_frames
        reader.get_frames(sorted({0, n // 2, n - 1}))
        return reader.info
