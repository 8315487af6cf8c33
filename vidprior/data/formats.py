"""Dataset formats, declared in one table: name -> how its records are read, which datasets it makes, video or image.

:data:`FORMATS` is the only place that knows the formats: the run configuration takes the allowed values of
``data.format`` from it, and the engine asks it for records and datasets instead of matching names. A new format is
one :class:`DataFormat` entry (a record reader and, for video formats, a clip dataset) plus its test.

Readers take the list path and the ``data`` section of a run configuration (any object with the attributes
``root``, ``labels``, ``classes``, ``video_suffix``) and return ``(records, class_names or None)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidprior.data.lists import Record, read_rawframe_list, read_ssv2, read_video_list, scan_image_folder
from vidprior.data.transforms import default_hflip
from vidprior.errors import VidpriorError, closest

Reader = Callable[[str, Any], tuple[list[Record], list[str] | None]]


def _read_list(path: str, opts: Any) -> tuple[list[Record], list[str] | None]:
    return read_video_list(path, root=opts.root, classes=opts.classes), None


def _read_ssv2(path: str, opts: Any) -> tuple[list[Record], list[str] | None]:
    if opts.labels is None:
        raise VidpriorError("data.labels: the SSv2 labels.json is required for data.format='ssv2'")
    return read_ssv2(opts.labels, path, root=opts.root or Path(path).parent, suffix=opts.video_suffix)


def _read_rawframes(path: str, opts: Any) -> tuple[list[Record], list[str] | None]:
    return read_rawframe_list(path, root=opts.root), None


def _read_imagefolder(path: str, opts: Any) -> tuple[list[Record], list[str] | None]:
    return scan_image_folder(path)


def _decoded_clips(records: list[Record], *, template: str, backend: str, decode_timeout, **kw: Any):
    from vidprior.data.datasets import VideoDataset

    return VideoDataset(records, backend=backend, decode_timeout=decode_timeout, **kw)


def _rawframe_clips(records: list[Record], *, template: str, backend: str, decode_timeout, **kw: Any):
    from vidprior.data.datasets import RawFrameDataset

    return RawFrameDataset(records, template=template, **kw)


@dataclass(frozen=True)
class DataFormat:
    """One ``data.format`` value.

    ``read``: list path + data options -> ``(records, class names or None)``. ``clips``: for video formats, the clip
    dataset factory ``(records, *, template, backend, decode_timeout, sampler, train, transform, seed,
    max_bad_fraction, report_path)``; ``None`` for image formats. ``frame_folders``: records are folders of frame
    images named by ``data.template``. ``flip_name``: the data-set name whose default flip policy applies
    (:func:`~vidprior.data.transforms.default_hflip`)."""

    name: str
    read: Reader
    video: bool
    clips: Callable[..., Any] | None = None
    frame_folders: bool = False
    flip_name: str | None = None
    help: str = ""

    def default_hflip(self) -> bool:
        return default_hflip(self.flip_name)


FORMATS: dict[str, DataFormat] = {
    f.name: f
    for f in (
        DataFormat("list", _read_list, video=True, clips=_decoded_clips, help="'path label' lines of videos"),
        DataFormat(
            "ssv2",
            _read_ssv2,
            video=True,
            clips=_decoded_clips,
            flip_name="ssv2",  # labels name directions: no flip by default
            help="Something-Something v2 JSON lists (+ data.labels) over <root>/<id><video_suffix>",
        ),
        DataFormat(
            "rawframes",
            _read_rawframes,
            video=True,
            clips=_rawframe_clips,
            frame_folders=True,
            help="'frame_dir num_frames label' lines, frames named by data.template",
        ),
        DataFormat("imagefolder", _read_imagefolder, video=False, help="root/<class>/<image>"),
        DataFormat("imagelist", _read_list, video=False, help="'path label' lines of images"),
    )
}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
VIDEO_FORMATS: tuple[str, ...] = tuple(n for n, f in FORMATS.items() if f.video)


def get_format(name: str) -> DataFormat:
    """The format called ``name``; an unknown name lists the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise VidpriorError(
            f"data.format={name!r}{closest(str(name), FORMAT_NAMES)}: expected one of {list(FORMAT_NAMES)}"
        ) from None


__all__ = ["FORMATS", "FORMAT_NAMES", "VIDEO_FORMATS", "DataFormat", "get_format"]
