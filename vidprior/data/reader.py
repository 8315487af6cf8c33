"""The reader interface every backend implements: exact frames by index as a (T, C, H, W) uint8 tensor.

A backend subclasses :class:`VideoReader`, sets ``info`` in ``__init__`` and implements ``_decode`` (sorted unique
indices -> frames) and ``_close``; the base class checks indices, turns backend exceptions into
:class:`~vidprior.data.errors.DecodeError`, stacks the frames in the requested order and refuses use after a fork.
"""

from __future__ import annotations

import operator
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidprior.data.errors import DECODE_ERROR, DecodeError
from vidprior.errors import VidpriorError


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
