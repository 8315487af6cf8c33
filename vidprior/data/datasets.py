"""Datasets: videos (decoded online), raw-frame folders, images, and the frames of a video set as images.

Every dataset returns a dict: ``{"video": (C, T, H, W) float}`` (training) or ``{"video": (V, C, T, H, W)}``
(test: V = clips x crops views), or ``{"image": ...}``, plus ``"label"`` (int, or a multi-hot float vector for
multi-label records) and ``"index"``. Bad files are substituted and reported (:mod:`vidprior.data.robust`).

Randomness (temporal offsets, augmentation) is a pure function of ``(seed, epoch, index)``: call ``set_epoch``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

from vidprior.data.containers import check_file
from vidprior.data.errors import DECODE_ERROR, MISSING, NOT_A_FILE, TOO_SHORT, DecodeError
from vidprior.data.lists import Record
from vidprior.data.robust import RobustDataset
from vidprior.data.sampling import DenseSampler, SegmentSampler
from vidprior.errors import VidpriorError

Transform = Callable[[Any], Tensor]


def _label(record: Record, num_classes: int | None) -> int | Tensor:
    if isinstance(record.label, tuple):
        if num_classes is None:
            raise VidpriorError(f"{record.path}: multi-label record needs num_classes to build a multi-hot target")
        target = torch.zeros(num_classes)
        target[list(record.label)] = 1.0
        return target
    return record.label


def _open_rgb(path: str):
    """A PIL RGB image, or DecodeError with the reason."""
    from PIL import Image, UnidentifiedImageError

    check_file(path)
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DecodeError(path, DECODE_ERROR, str(e).splitlines()[0]) from None


def _read_rgb(path: str) -> Tensor:
    """(3, H, W) uint8 from an image file (PIL: torchvision's image decoding is deprecated since 0.29)."""
    import numpy as np

    return torch.from_numpy(np.array(_open_rgb(path))).permute(2, 0, 1)


class VideoDataset(RobustDataset):
    """Videos decoded online: one clip per sample in training, every test view at test time.

    Args:
        records: from :func:`~vidprior.data.lists.read_video_list` or :func:`~vidprior.data.lists.read_ssv2`.
        sampler: :class:`DenseSampler` (Kinetics) or :class:`SegmentSampler` (SSv2).
        train: draw one random clip (``sampler.train``); else all ``sampler.test`` clips (multi-view).
        transform: maps a ``tv_tensors.Video`` (T, C, H, W) uint8 to (C, T, H, W), or to (crops, C, T, H, W).
        backend: ``"pyav"`` (default), ``"torchcodec"`` or ``"decord"``.
        min_frames: videos with fewer frames count as bad (reason ``too_short``).
        seed, max_bad_fraction, decode_timeout, report_path: see :class:`~vidprior.data.robust.RobustDataset`.
    """

    def __init__(
        self,
        records: Sequence[Record],
        *,
        sampler: DenseSampler | SegmentSampler,
        train: bool,
        transform: Transform | None = None,
        backend: str = "pyav",
        num_threads: int = 1,
        min_frames: int = 1,
        num_classes: int | None = None,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        decode_timeout: float | None = 60.0,
        report_path: str | Path | None = None,
    ) -> None:
        super().__init__(
            len(records),
            seed=seed,
            max_bad_fraction=max_bad_fraction,
            decode_timeout=decode_timeout,
            report_path=report_path,
        )
        from vidprior.data.backends import backend_names

        if backend not in backend_names():
            raise VidpriorError(f"backend={backend!r}: expected one of {backend_names()}")
        self.records = list(records)
        self.sampler = sampler
        self.train = train
        self.transform = transform
        self.backend = backend
        self.num_threads = num_threads
        self.min_frames = min_frames
        self.num_classes = num_classes

    def path_of(self, index: int) -> str:
        return self.records[index].path

    def _transform(self, frames: Tensor) -> Tensor:
        video = tv_tensors.Video(frames)  # (T, C, H, W) uint8
        if self.transform is None:
            return frames.permute(1, 0, 2, 3)  # (C, T, H, W)
        return self.transform(video)

    def _load(self, index: int, rng: random.Random) -> dict[str, Any]:
        from vidprior.data.decode import open_video

        record = self.records[index]
        with open_video(record.path, backend=self.backend, num_threads=self.num_threads) as reader:
            n = reader.info.num_frames
            if n < self.min_frames:
                raise DecodeError(record.path, TOO_SHORT, f"{n} frames, need {self.min_frames}")
            if self.train:
                video = self._transform(reader.get_frames(self.sampler.train(n, rng)))
            else:
                clips = reader.get_clips(self.sampler.test(n))  # each frame decoded once for all views
                views = [self._transform(c) for c in clips]
                # (clips, [crops,] C, T, H, W) -> (views, C, T, H, W)
                video = torch.stack(views).flatten(0, -5) if views[0].dim() == 5 else torch.stack(views)
        return {"video": video, "label": _label(record, self.num_classes), "video_id": record.video_id}


class RawFrameDataset(VideoDataset):
    """mmaction2-style raw frames: ``<frame_dir>/<template.format(i + start_index)>`` JPEGs (``num_frames`` from the
    list file)."""

    def __init__(
        self,
        records: Sequence[Record],
        *,
        template: str = "img_{:05d}.jpg",
        start_index: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(records, **kwargs)
        missing = [r.path for r in self.records if r.num_frames is None]
        if missing:
            raise VidpriorError(f"raw-frame records need a frame count (e.g. {missing[0]}); use read_rawframe_list")
        self.template = template
        self.start_index = start_index

    def _frames(self, record: Record, indices: Sequence[int]) -> Tensor:
        cache: dict[int, Tensor] = {}
        for i in sorted(set(indices)):
            path = str(Path(record.path) / self.template.format(i + self.start_index))
            cache[i] = _read_rgb(path)
        return torch.stack([cache[i] for i in indices])  # (T, C, H, W)

    def _load(self, index: int, rng: random.Random) -> dict[str, Any]:
        record = self.records[index]
        if not Path(record.path).is_dir():
            raise DecodeError(record.path, MISSING if not Path(record.path).exists() else NOT_A_FILE)
        n = int(record.num_frames or 0)
        if n < self.min_frames or n < 1:
            raise DecodeError(record.path, TOO_SHORT, f"{n} frames, need {max(1, self.min_frames)}")
        if self.train:
            video = self._transform(self._frames(record, self.sampler.train(n, rng)))
        else:
            views = [self._transform(self._frames(record, c)) for c in self.sampler.test(n)]
            video = torch.stack(views).flatten(0, -5) if views[0].dim() == 5 else torch.stack(views)
        return {"video": video, "label": _label(record, self.num_classes), "video_id": record.video_id}


class ImageDataset(RobustDataset):
    """Images (ImageFolder scan or ``path label`` list) through a PIL transform (timm's)."""

    def __init__(
        self,
        records: Sequence[Record],
        *,
        transform: Transform | None = None,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        report_path: str | Path | None = None,
    ) -> None:
        super().__init__(len(records), seed=seed, max_bad_fraction=max_bad_fraction, report_path=report_path)
        self.records = list(records)
        self.transform = transform

    def path_of(self, index: int) -> str:
        return self.records[index].path

    def _load(self, index: int, rng: random.Random) -> dict[str, Any]:
        record = self.records[index]
        image = _open_rgb(record.path)
        out = self.transform(image) if self.transform is not None else image
        return {"image": out, "label": record.label}


class VideoFramesDataset(RobustDataset):
    """The frames of a video data set as an image data set with the video's label (paper Table 8: pre-training
    on Kinetics frames). Sample ``i`` is a frame of video ``i // frames_per_video``: a random one of the
    ``i % frames_per_video``-th equal part of the video in training, that part's centre frame otherwise. Images go
    through a PIL transform (timm's). ``len`` is ``len(records) * frames_per_video``.

    Videos are decoded with ``backend``; with ``template`` set, records are raw-frame folders
    (``<path>/<template.format(i + start_index)>``, frame count from the record, as :class:`RawFrameDataset`).
    ``max_bad_fraction`` counts bad videos among the videos (not among the samples)."""

    def __init__(
        self,
        records: Sequence[Record],
        *,
        frames_per_video: int = 1,
        train: bool = True,
        transform: Transform | None = None,
        backend: str = "pyav",
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        decode_timeout: float | None = 60.0,
        report_path: str | Path | None = None,
        template: str | None = None,
        start_index: int = 1,
    ) -> None:
        if frames_per_video < 1:
            raise VidpriorError(f"frames_per_video={frames_per_video!r}: expected >= 1")
        if template is not None:
            missing = [r.path for r in records if r.num_frames is None]
            if missing:
                raise VidpriorError(f"raw-frame records need a frame count (e.g. {missing[0]}); use read_rawframe_list")
        super().__init__(
            len(records) * frames_per_video,
            seed=seed,
            max_bad_fraction=max_bad_fraction,
            decode_timeout=decode_timeout,
            report_path=report_path,
        )
        self.records = list(records)
        self.tracker.total = len(self.records)  # bad files are videos: the fraction is over the videos
        self.k = frames_per_video
        self.train = train
        self.transform = transform
        self.backend = backend
        self.template = template
        self.start_index = start_index

    def path_of(self, index: int) -> str:
        return self.records[index // self.k].path

    def _frame_index(self, index: int, n: int, rng: random.Random) -> int:
        part = index % self.k
        lo, hi = part * n // self.k, max((part + 1) * n // self.k, part * n // self.k + 1)
        return rng.randrange(lo, min(hi, n)) if self.train else min((lo + hi) // 2, n - 1)

    def _load(self, index: int, rng: random.Random) -> dict[str, Any]:
        from torchvision.transforms.functional import to_pil_image

        from vidprior.data.decode import open_video

        record = self.records[index // self.k]
        if self.template is not None:
            if not Path(record.path).is_dir():
                raise DecodeError(record.path, MISSING if not Path(record.path).exists() else NOT_A_FILE)
            n = int(record.num_frames or 0)
            if n < 1:
                raise DecodeError(record.path, TOO_SHORT, f"{n} frames")
            frame_index = self._frame_index(index, n, rng)
            image = _open_rgb(str(Path(record.path) / self.template.format(frame_index + self.start_index)))
        else:
            with open_video(record.path, backend=self.backend) as reader:
                n = reader.info.num_frames
                if n < 1:
                    raise DecodeError(record.path, TOO_SHORT, f"{n} frames")
                frame_index = self._frame_index(index, n, rng)
                frame = reader.get_frames([frame_index])[0]  # (C, H, W) uint8
            image = to_pil_image(frame)
        out = self.transform(image) if self.transform is not None else image
        return {"image": out, "label": record.label, "frame": frame_index}
