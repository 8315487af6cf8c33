"""Decoder backends, declared in one table: name -> reader class, the module it needs, and how to install it.

Everything that names a backend (config validation, the CLI's help, error messages, :func:`open_video`) reads
:data:`BACKEND_TABLE`; :data:`BACKENDS` is the tuple of the built-in names. A reader for another library is one
:func:`register_backend` call (a :class:`~vidprior.data.reader.VideoReader` subclass or any callable
``(path, *, num_threads) -> VideoReader``); the data loaders then accept its name like a built-in one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vidprior.data.containers import precheck
from vidprior.data.errors import DECODE_ERROR, TRUNCATED, DecodeError
from vidprior.data.pyav_reader import PyAVReader
from vidprior.data.reader import VideoInfo, VideoReader
from vidprior.errors import VidpriorError, closest


class BackendUnavailableError(VidpriorError, ImportError):
    """The decoding backend asked for is not installed or cannot load."""


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


@dataclass(frozen=True)
class Backend:
    """One decoder backend: ``opener(path, *, num_threads)`` returns an open reader; ``module`` must import for the
    backend to be available (None: always); ``install`` is the hint shown when it does not."""

    opener: Callable[..., VideoReader]
    module: str | None = None
    install: str = ""


#: name -> backend. The first is the default.
BACKEND_TABLE: dict[str, Backend] = {
    "pyav": Backend(PyAVReader, "av", "pip install av"),
    "torchcodec": Backend(
        TorchCodecReader,
        "torchcodec.decoders",
        "pip install torchcodec (it also needs the system FFmpeg libraries, e.g. `apt-get install ffmpeg`)",
    ),
    "decord": Backend(DecordReader, "decord", "pip install decord"),
}
#: The built-in backend names (what configs may name).
BACKENDS: tuple[str, ...] = tuple(BACKEND_TABLE)


def register_backend(
    name: str, opener: Callable[..., VideoReader], *, module: str | None = None, install: str = ""
) -> None:
    """Add (or replace) a backend: ``opener(path, *, num_threads) -> VideoReader``. Register it before DataLoader
    workers start (they inherit the table when forked)."""
    if not name or not isinstance(name, str):
        raise VidpriorError(f"backend name {name!r}: expected a non-empty string")
    BACKEND_TABLE[name] = Backend(opener, module, install)


def backend_names() -> tuple[str, ...]:
    """Every backend name known here (built-in and registered), installed or not."""
    return tuple(BACKEND_TABLE)


@functools.cache
def _module_error(module: str) -> str | None:
    """None if the module imports, else why not."""
    try:
        __import__(module)
    except Exception as e:  # ImportError, or e.g. torchcodec's RuntimeError when FFmpeg libraries are missing
        return f"{type(e).__name__}: {e}"
    return None


def _backend_error(backend: str) -> str | None:
    module = BACKEND_TABLE[backend].module
    return None if module is None else _module_error(module)


def available_backends() -> list[str]:
    """The backends that can be used here, in :data:`BACKEND_TABLE` order."""
    return [b for b in BACKEND_TABLE if _backend_error(b) is None]


def check_backend(backend: str) -> None:
    """``VidpriorError`` for an unknown name, :class:`BackendUnavailableError` (with the install hint) for one that
    is not installed."""
    names = backend_names()
    if backend not in names:
        raise VidpriorError(f"backend={backend!r}: expected one of {names}{closest(str(backend), names)}")
    error = _backend_error(backend)
    if error is not None:
        hint = BACKEND_TABLE[backend].install or "install it"
        raise BackendUnavailableError(
            f"video backend {backend!r} is not available ({error}); install it with `{hint}` "
            f"or use backend='pyav'. Available here: {available_backends()}"
        )
