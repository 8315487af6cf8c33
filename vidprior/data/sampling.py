"""Which frames a clip takes: dense sampling (Kinetics) and segment sampling (Something-Something V2).

Pure functions of the frame count and a ``random.Random``: the loader derives that generator from
``(seed, epoch, index)``, so an epoch's clips are reproducible and a resumed run sees the same data.

* Dense (mmaction2 ``SampleFrames``; docs/method.md, "Recipes"): ``clip_len`` frames ``interval`` apart. Training: one
  window from a uniformly random start. Test: ``num_clips`` windows centred in equal parts of the video.
* Segment (TSN): the video is cut into ``num_segments`` equal parts. Training: one random frame per part. Test:
  the centre frame of every part.

Short videos (policy ``short``): a dense window longer than the video either wraps around (``"loop"``, mmaction2's
default) or holds the last frame (``"repeat_last"``). Segment sampling never runs short: with fewer frames than
segments, neighbouring segments share frames.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from vidprior.errors import VidpriorError

ShortPolicy = Literal["loop", "repeat_last"]


def _fit(indices: list[int], num_frames: int, short: ShortPolicy) -> list[int]:
    if short == "loop":
        return [i % num_frames for i in indices]
    return [min(i, num_frames - 1) for i in indices]


@dataclass(frozen=True)
class DenseSampler:
    """``clip_len`` frames at ``interval``; ``num_clips`` uniformly spaced windows at test time."""

    clip_len: int = 8
    interval: int = 8
    num_clips: int = 1
    short: ShortPolicy = "loop"

    def __post_init__(self) -> None:
        for name in ("clip_len", "interval", "num_clips"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise VidpriorError(f"DenseSampler {name}={v!r}: expected a positive integer")
        if self.short not in ("loop", "repeat_last"):
            raise VidpriorError(f"short={self.short!r}: expected 'loop' or 'repeat_last'")

    @property
    def span(self) -> int:
        """Frames one window covers."""
        return (self.clip_len - 1) * self.interval + 1

    def _window(self, start: int, num_frames: int) -> list[int]:
        return _fit([start + i * self.interval for i in range(self.clip_len)], num_frames, self.short)

    def train(self, num_frames: int, rng: random.Random) -> list[int]:
        _check(num_frames)
        start = rng.randint(0, num_frames - self.span) if num_frames >= self.span else 0
        return self._window(start, num_frames)

    def test(self, num_frames: int) -> list[list[int]]:
        _check(num_frames)
        if num_frames < self.span:
            return [self._window(0, num_frames) for _ in range(self.num_clips)]
        part = (num_frames - self.span + 1) / self.num_clips
        return [self._window(int(part * i + part / 2), num_frames) for i in range(self.num_clips)]

    @property
    def frames(self) -> int:
        return self.clip_len


@dataclass(frozen=True)
class SegmentSampler:
    """One frame from each of ``num_segments`` equal parts (random in training, the centre at test)."""

    num_segments: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.num_segments, int) or isinstance(self.num_segments, bool) or self.num_segments < 1:
            raise VidpriorError(f"SegmentSampler num_segments={self.num_segments!r}: expected a positive integer")

    def _bounds(self, num_frames: int, i: int) -> tuple[int, int]:
        lo = i * num_frames // self.num_segments
        hi = max((i + 1) * num_frames // self.num_segments, lo + 1)
        return lo, min(hi, num_frames)

    def train(self, num_frames: int, rng: random.Random) -> list[int]:
        _check(num_frames)
        out = []
        for i in range(self.num_segments):
            lo, hi = self._bounds(num_frames, i)
            out.append(rng.randrange(lo, hi))
        return out

    def test(self, num_frames: int) -> list[list[int]]:
        _check(num_frames)
        k = self.num_segments
        return [[min(int((i + 0.5) * num_frames / k), num_frames - 1) for i in range(k)]]

    @property
    def num_clips(self) -> int:
        return 1

    @property
    def frames(self) -> int:
        return self.num_segments


def _check(num_frames: int) -> None:
    if num_frames < 1:
        raise VidpriorError(f"cannot sample from a video with {num_frames} frames")


Sampler = DenseSampler | SegmentSampler


def make_sampler(geometry: str, *, num_clips: int = 1, short: ShortPolicy = "loop") -> Sampler:
    """A sampler from a geometry name: ``"8x8"`` (frames x interval, any numbers) or ``"seg8"`` (segments). The
    paper's geometries are ``8x8``, ``32x2``, ``13x6`` (X3D-S), ``4x12``, ``16x5`` and ``seg8`` / ``seg32`` for SSv2
    (docs/method.md, "Recipes")."""
    g = geometry.strip().lower()
    try:
        if g.startswith("seg"):
            return SegmentSampler(int(g[3:]))
        frames, interval = g.split("x")
        return DenseSampler(int(frames), int(interval), num_clips, short)
    except ValueError:
        raise VidpriorError(
            f"clip geometry {geometry!r}: expected 'FRAMESxINTERVAL' (e.g. '8x8', '32x2', '13x6') or 'segN' "
            "(e.g. 'seg8')"
        ) from None
