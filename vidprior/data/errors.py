"""Why a file could not be used: one reason code per bad file, recorded in skipped-files reports and manifests."""

from __future__ import annotations

from vidprior.errors import VidpriorError

# Reason codes (stable strings: they appear in reports and manifests).
MISSING = "missing"  # the path does not exist
NOT_A_FILE = "not_a_file"  # a directory (or other non-regular file) named like a video
EMPTY = "empty"  # zero bytes
NO_VIDEO_STREAM = "no_video_stream"  # a container without a video stream (or not a media file at all)
TRUNCATED = "truncated"  # the file ends before its frames do (header present, data cut)
DECODE_ERROR = "decode_error"  # the decoder failed on the data
TOO_SHORT = "too_short"  # fewer frames than the dataset's minimum
TIMEOUT = "timeout"  # decoding took longer than the per-sample limit
CRASHED = "crashed"  # the decoder killed the DataLoader worker process reading the file (e.g. a segfault)
REASONS = (MISSING, NOT_A_FILE, EMPTY, NO_VIDEO_STREAM, TRUNCATED, DECODE_ERROR, TOO_SHORT, TIMEOUT, CRASHED)


class DecodeError(VidpriorError):
    """A file could not be decoded; ``reason`` is one of :data:`REASONS`, ``path`` the file."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
