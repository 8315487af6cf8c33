"""The default reader (PyAV): exact frames by index, each decoded at most once per request.

How it finds frames without decoding the whole video:

* On open it demuxes the video stream's packets once (no decoding) and keeps their presentation timestamps (sorted:
  presentation order) and which packets are keyframes. Frame ``i`` is the packet with the ``i``-th smallest pts, so
  ``num_frames`` is exact and a decoded frame's pts gives its index, also with B-frames (decode order != pts order).
* Edit lists (an mp4 cut by stream copy, ``ffmpeg -ss T -c copy``): the packets before the cut are kept in the file,
  flagged "discard", because the first kept frames need the keyframe that starts their group of pictures. They are
  not frames of the video (the decoder drops them), but they are where decoding must start: seek points are the
  keyframes of all packets, discarded ones included, and the first frames are decoded from the discarded keyframe.
* Duplicate timestamps (e.g. a Matroska file whose timestamps are too coarse for its frame rate, so pairs of frames
  share one): a pts no longer names one frame. Such a file is read sequentially: frames are counted as they come out
  of the decoder from the start of the stream (no seeking past the start, no skipped frames), which is what a plain
  sequential decode gives.
* A request is decoded in one forward pass over its sorted, unique indices: seek once to the keyframe at or before
  the first one, decode forward, and stop as soon as the last one is out. It keeps decoding forward to the next
  needed frame while that frame is in the same GOP, or when seeking would skip no more than
  :data:`SEEK_SKIP_FRAMES` frames; only a frame behind a later keyframe and farther away than that makes it seek
  again, forward, to that keyframe. So no frame is decoded twice, and a multi-view request (``get_clips``) costs at
  most one pass from the first needed keyframe to the last needed frame.
* H.264/HEVC packets of frames that are not needed are sent with ``skip_frame=NONREF``: the decoder drops them if
  no other frame references them (most B-frames), which cuts the lead-in from a keyframe to the wanted frames.
* Only the needed frames are converted to RGB.

Counters for tests and profiling: ``reader.frames_decoded`` (frames that came out of the decoder) and
``reader.seeks`` (seeks made to decode).
"""

from __future__ import annotations

import bisect

import numpy as np

from vidprior.data.containers import open_container, precheck, video_stream
from vidprior.data.errors import DECODE_ERROR, TRUNCATED, DecodeError
from vidprior.data.reader import VideoInfo, VideoReader

#: Keep decoding forward (instead of seeking to a later keyframe) when the seek would skip at most this many frames.
SEEK_SKIP_FRAMES = 4
#: Codecs whose FFmpeg decoders honour ``skip_frame=NONREF`` per packet (others are always fully decoded).
_NONREF_CODECS = frozenset({"h264", "hevc"})


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
        """Demux (no decode) the video packets once: frame order, seek points, and their timestamps."""
        path, stream = self.path, self._stream
        frames: list[int] = []  # pts of every packet that is a frame of the video
        seek_points: set[int] = set()  # pts of every keyframe, discarded ones (before an edit list's start) included
        packets = 0
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                packets += 1
                pts = packet.pts
                if pts is None:
                    continue
                if packet.is_keyframe:
                    seek_points.add(pts)
                if not packet.is_discard:
                    frames.append(pts)
        except self._av.error.FFmpegError as e:
            raise DecodeError(path, DECODE_ERROR, f"demuxing failed after {packets} packets: {e}") from None
        declared = stream.frames
        if not frames:
            detail = f"the header declares {declared} frames" if declared else "the video stream holds no frames"
            raise DecodeError(path, TRUNCATED, f"no video packets ({detail}; {size} bytes)")
        if declared and packets < declared:
            raise DecodeError(path, TRUNCATED, f"{packets} of the {declared} frames the header declares are present")
        self._pts = sorted(frames)
        self._sequential = len(set(self._pts)) != len(self._pts)  # duplicate timestamps: count frames in order
        self._index = {} if self._sequential else {p: i for i, p in enumerate(self._pts)}
        if self._sequential:
            self._use_nonref = False  # a dropped frame would shift the count
            seek_points = {min(seek_points | {self._pts[0]})}  # only ever decode from the start
        self._seek_pts = sorted(seek_points) or [self._pts[0]]
        #: frame indices of the keyframes that are frames of the video (for tests and profiling)
        self._keyframes = [i for i, p in enumerate(self._pts) if p in seek_points] or [0]

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
        """The pts of the last seek point at or before frame ``i`` (the first seek point if there is none before)."""
        j = bisect.bisect_right(self._seek_pts, self._pts[i]) - 1
        return self._seek_pts[max(j, 0)]

    def _earlier(self, seek_pts: int) -> int:
        """The seek point before ``seek_pts`` (itself if it is the first)."""
        j = bisect.bisect_left(self._seek_pts, seek_pts) - 1
        return self._seek_pts[max(j, 0)]

    def _first_frame_at(self, seek_pts: int) -> int:
        """Index of the first frame presented at or after ``seek_pts`` (0 before the first frame)."""
        return 0 if self._sequential else bisect.bisect_left(self._pts, seek_pts)

    def _seek(self, seek_pts: int) -> None:
        self._stop()
        # FFmpeg's demuxers (mov included) seek on presentation timestamps: this lands on the keyframe itself
        self._container.seek(seek_pts, stream=self._stream, backward=True)
        self._stream.codec_context.flush_buffers()
        self.seeks += 1
        self._packets = self._container.demux(self._stream)
        self._frame_iter = self._frames()
        self._pos = self._first_frame_at(seek_pts) - 1  # nothing of this GOP is out yet

    def _must_seek(self, target: int) -> bool:
        if self._packets is None or target <= self._pos:
            return True
        return self._first_frame_at(self._keyframe_before(target)) > self._pos + 1 + SEEK_SKIP_FRAMES

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
                if self._sequential:
                    yield self._pos + 1, frame
                    continue
                if frame.pts is None:  # no timestamp: the frame after the last one out
                    yield self._pos + 1, frame
                    continue
                i = index.get(frame.pts)
                if i is None:
                    if frame.pts < self._pts[0]:
                        continue  # a frame of a discarded packet (before an edit list's start) the decoder kept
                    detail = f"the decoder put out a frame with pts {frame.pts}, which no packet has"
                    raise DecodeError(self.path, DECODE_ERROR, detail)
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
                            k = self._earlier(k)
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
