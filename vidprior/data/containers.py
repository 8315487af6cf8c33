"""Checks a file gets before any decoder sees it, and FFmpeg's open turned into reasons.

* :func:`check_file`: a missing path, a directory or other non-regular file, an empty file.
* :func:`container_truncation`: an mp4-family box or a Matroska segment that runs past the end of the file (read from
  the box sizes, a few bytes per top-level box, no demuxing).
* :func:`image_kind`: a still image (PNG, JPEG, GIF, BMP, WebP) named like a video: FFmpeg would open it as a
  one-frame "video", so it is refused by its first bytes, whatever the backend.
* :func:`open_container` / :func:`video_stream`: PyAV's open with FFmpeg's exceptions mapped to reason codes.
"""

from __future__ import annotations

import os
import stat

from vidprior.data.errors import (
    DECODE_ERROR,
    EMPTY,
    MISSING,
    NO_VIDEO_STREAM,
    NOT_A_FILE,
    TRUNCATED,
    DecodeError,
)


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


#: First bytes of still-image formats (FFmpeg opens each as a one-frame video through an image demuxer).
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def image_kind(head: bytes) -> str | None:
    """The still-image format whose signature starts ``head`` (PNG, JPEG, GIF, BMP, WebP), or None."""
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            if name == "BMP" and len(head) >= 6 and int.from_bytes(head[2:6], "little") < 26:
                continue  # "BM" followed by a size too small for a bitmap: not one
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
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

    fmt = container.format.name or ""
    if fmt.endswith("_pipe") or fmt in ("image2", "image2pipe"):  # a still image FFmpeg would call a 1-frame video
        raise DecodeError(path, NO_VIDEO_STREAM, f"an image (FFmpeg reads it as {fmt}), not a video")
    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise DecodeError(path, NO_VIDEO_STREAM, f"streams: {', '.join(kinds)}")
    return streams[0]


def precheck(path: str) -> int:
    """:func:`check_file`, a still image (``DecodeError`` ``no_video_stream``) and :func:`container_truncation`
    (``DecodeError`` ``truncated``); returns the size."""
    size = check_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise DecodeError(path, DECODE_ERROR, f"cannot read: {e}") from None
    kind = image_kind(head)
    if kind is not None:
        raise DecodeError(path, NO_VIDEO_STREAM, f"a {kind} image, not a video; list it as an image or remove it")
    why = container_truncation(path, size)
    if why is not None:
        raise DecodeError(path, TRUNCATED, why)
    return size
