"""Re-encode videos to a short side (320 by default) and, optionally, a fixed keyframe interval, with PyAV only.

Decoding is the bottleneck of video training; smaller frames and short GOPs cut it (see ``benchmarks/decode.py``).
``vidprior data reencode SRC DST --short-side 320 --gop 16`` mirrors the folder tree of SRC under DST.

* Size: scaled so that the short side is ``short_side`` (never up-scaled), aspect ratio kept, both sides rounded to
  even numbers (4:2:0 needs them). Frame count kept: every decoded frame is written once, re-timed at the source's
  average frame rate (variable-rate sources become constant-rate). Audio, subtitles and metadata are dropped.
* Keyframes: ``gop=None`` keeps the encoder's default (x264: at most every 250 frames, plus scene cuts);
  ``gop=N`` puts a keyframe exactly every N frames (no scene-cut keyframes), so seeking costs at most N - 1 frames.
* Codec and suffix: ``codec="libx264"`` (default; H.264, yuv420p, ``crf`` 23, x264 ``preset`` veryfast) or
  ``"libvpx-vp9"``. An output keeps its source's suffix when that container can hold the codec; otherwise it gets
  the codec's default suffix (:func:`output_suffix`): WebM holds only VP8/VP9/AV1 and AVI cannot store the
  timestamps of B-frames, so H.264 from ``.webm``/``.avi`` goes to ``.mp4``; VP9 from ``.avi``/``.mov``/``.m4v``
  goes to ``.webm``. (So Something-Something V2 ``x.webm`` re-encoded to H.264 becomes ``x.mp4``: pass
  ``suffix=".mp4"`` to :func:`~vidprior.data.lists.read_ssv2`.) mp4/mov outputs have their index at the front.
* Safe to interrupt and re-run: each output is written to ``<name>.tmp`` next to it, flushed to disk and renamed
  at the end; an output that exists is skipped, and ``*.tmp`` left by a killed run are deleted at the start.
* Bad inputs do not stop the run: their reasons (:mod:`vidprior.data.errors`) are collected in the summary.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from vidprior.data.decode import VideoInfo, open_container, precheck, probe, video_stream
from vidprior.data.errors import DECODE_ERROR, TRUNCATED, DecodeError
from vidprior.data.lists import VIDEO_SUFFIXES
from vidprior.errors import VidpriorError

#: Which containers each encoder may be written to, and the default suffix when the source's cannot hold it.
CONTAINERS = {
    "libx264": ((".mp4", ".mkv", ".mov", ".m4v"), ".mp4"),
    "libvpx-vp9": ((".webm", ".mkv", ".mp4"), ".webm"),
}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}


def output_suffix(suffix: str, codec: str = "libx264") -> str:
    """The suffix of the re-encoded file: ``suffix`` if its container can hold ``codec``, else the codec's default."""
    if codec not in CONTAINERS:
        raise VidpriorError(f"codec={codec!r}: expected one of {tuple(CONTAINERS)}")
    allowed, default = CONTAINERS[codec]
    return suffix.lower() if suffix.lower() in allowed else default


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` (never larger than the source), both even."""
    if short_side < 2:
        raise VidpriorError(f"short_side={short_side!r}: expected a size in pixels >= 2")
    scale = min(1.0, short_side / min(width, height))
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def _encoder_options(codec: str, gop: int | None, crf: int, preset: str) -> dict[str, str]:
    if codec == "libx264":
        options = {"crf": str(crf), "preset": preset}
    else:  # libvpx-vp9: constant quality, speed comparable to x264 veryfast
        options = {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
    if gop is not None:
        if gop < 1:
            raise VidpriorError(f"gop={gop!r}: expected a keyframe interval >= 1 (or None for the encoder's default)")
        options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")  # exactly every gop frames
    return options


def reencode_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    short_side: int = 320,
    gop: int | None = None,
    crf: int = 23,
    codec: str = "libx264",
    preset: str = "veryfast",
    threads: int = 1,
) -> VideoInfo:
    """Decode ``src``, scale it (short side ``short_side``, never up), encode it to ``dst``; return ``dst``'s info.

    Raises ``DecodeError`` (with the reason) when ``src`` cannot be decoded, and ``VidpriorError`` when ``dst``'s
    suffix cannot hold ``codec`` (see :func:`output_suffix`). ``dst`` appears only when complete (written to
    ``dst + ".tmp"``, fsynced, renamed). ``threads``: decoder and encoder threads (1 suits a process pool).
    """
    import av

    src, dst = os.fspath(src), Path(dst)
    suffix = dst.suffix.lower()
    if suffix not in _FORMATS or output_suffix(suffix, codec) != suffix:
        hint = output_suffix(suffix, codec) if suffix in _FORMATS else CONTAINERS.get(codec, ((), ".mp4"))[1]
        raise VidpriorError(f"{dst}: a '{suffix}' file cannot hold {codec}; use '{hint}'")
    options = _encoder_options(codec, gop, crf, preset)
    precheck(src)
    tmp = dst.with_name(dst.name + ".tmp")
    dst.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with open_container(src) as source:
            vin = video_stream(source, src)
            vin.codec_context.thread_count = threads
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            rate = Fraction(rate).limit_denominator(1001 * 1000)
            width, height = output_size(vin.codec_context.width, vin.codec_context.height, short_side)
            mux = {"movflags": "+faststart"} if suffix in (".mp4", ".m4v", ".mov") else {}
            with av.open(str(tmp), "w", format=_FORMATS[suffix], options=mux) as out:
                vout = out.add_stream(codec, rate=rate)
                vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                vout.codec_context.thread_count = threads
                if gop is not None:
                    vout.codec_context.gop_size = gop
                vout.options = options
                frame_tb = vout.codec_context.time_base or 1 / rate
                scaler = av.video.reformatter.VideoReformatter()  # one swscale context for all frames
                try:
                    for frame in source.decode(vin):
                        small = scaler.reformat(
                            frame, width, height, "yuv420p", interpolation="BICUBIC", threads=threads
                        )
                        small.pts, small.time_base = written, frame_tb  # re-timed at a constant rate
                        small.pict_type = av.video.frame.PictureType.NONE
                        for packet in vout.encode(small):
                            out.mux(packet)
                        written += 1
                    for packet in vout.encode():
                        out.mux(packet)
                except av.error.FFmpegError as e:
                    raise DecodeError(src, DECODE_ERROR, f"after {written} frames: {e}") from None
                if written == 0:
                    raise DecodeError(src, TRUNCATED, "no frame decodes")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return probe(dst)


# ---------------------------------------------------------------------------------------------------------------
# whole trees


@dataclass
class ReencodeSummary:
    """What :func:`reencode_tree` did. ``failed``: source path -> (reason, detail)."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    cleaned: int = 0
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reasons(self) -> dict[str, int]:
        return dict(Counter(reason for reason, _ in self.failed.values()))

    def __str__(self) -> str:
        text = (
            f"{self.total} videos: {self.done} re-encoded, {self.skipped} already done, {len(self.failed)} failed"
            f"{' ' + str(self.reasons) if self.failed else ''}; {self.cleaned} stale .tmp removed; "
            f"{self.seconds:.1f} s"
        )
        return text + "".join(f"\n  {r:<16} {p}  {d}" for p, (r, d) in sorted(self.failed.items()))


def _job(src: str, dst: str, kwargs: dict) -> tuple[str, str | None, str]:
    try:
        reencode_video(src, dst, **kwargs)
    except DecodeError as e:
        return src, e.reason, e.detail
    except Exception as e:  # an encoder or file-system error: record it, do not stop the tree
        return src, DECODE_ERROR, f"{type(e).__name__}: {e}"
    return src, None, ""


def reencode_tree(
    src_root: str | os.PathLike,
    dst_root: str | os.PathLike,
    *,
    short_side: int = 320,
    gop: int | None = None,
    workers: int | None = None,
    suffixes: Sequence[str] = VIDEO_SUFFIXES,
    codec: str = "libx264",
    crf: int = 23,
    preset: str = "veryfast",
    progress: bool = True,
) -> ReencodeSummary:
    """Re-encode every video under ``src_root`` (files whose suffix is in ``suffixes``, any case) to the same relative
    path under ``dst_root`` (suffix per :func:`output_suffix`), in ``workers`` processes (default: all cores).

    Outputs that exist are skipped, ``*.tmp`` files left in ``dst_root`` by an interrupted run are removed first,
    and files that fail are recorded in the summary (with their reason) instead of stopping the run.
    """
    t0 = time.perf_counter()
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise VidpriorError(f"{src_root}: not a folder")
    if dst_root.resolve() == src_root.resolve():
        raise VidpriorError(f"{dst_root}: the output folder must differ from the source folder")
    output_suffix(".mp4", codec)  # validates the codec
    _encoder_options(codec, gop, crf, preset)  # validates gop
    wanted = {s.lower() for s in suffixes}
    summary = ReencodeSummary()
    if dst_root.is_dir():
        for tmp in dst_root.rglob("*.tmp"):
            if tmp.is_file() and Path(tmp.stem).suffix.lower() in _FORMATS:
                tmp.unlink()
                summary.cleaned += 1
    jobs = []
    sources: dict[Path, Path] = {}  # output -> its source
    inside = dst_root.resolve().is_relative_to(src_root.resolve())
    for src in sorted(p for p in src_root.rglob("*") if p.suffix.lower() in wanted and p.is_file()):
        if inside and src.resolve().is_relative_to(dst_root.resolve()):
            continue  # our own outputs, when the output folder lies inside the source folder
        rel = src.relative_to(src_root)
        dst = dst_root / rel.with_suffix(output_suffix(src.suffix, codec))
        summary.total += 1
        if dst in sources:  # e.g. x.webm and x.mp4 side by side, both becoming x.mp4
            summary.failed[str(src)] = (DECODE_ERROR, f"its output {dst} is already the output of {sources[dst]}")
            continue
        sources[dst] = src
        if dst.exists():
            summary.skipped += 1
        else:
            jobs.append((str(src), str(dst)))
    kwargs = {"short_side": short_side, "gop": gop, "crf": crf, "codec": codec, "preset": preset}
    bar = None
    if progress and jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="re-encoding", unit="video", dynamic_ncols=True, smoothing=0.05)

    def record(result: tuple[str, str | None, str]) -> None:
        src, reason, detail = result
        if reason is None:
            summary.done += 1
        else:
            summary.failed[src] = (reason, detail)
        if bar is not None:
            bar.update()
            if summary.failed:
                bar.set_postfix(failed=len(summary.failed))

    workers = max(1, workers or os.cpu_count() or 1)
    try:
        if workers == 1 or len(jobs) <= 1:
            for src, dst in jobs:
                record(_job(src, dst, kwargs))
        else:
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                futures = {pool.submit(_job, src, dst, kwargs): src for src, dst in jobs}
                for future in concurrent.futures.as_completed(futures):
                    try:
                        record(future.result())
                    except concurrent.futures.process.BrokenProcessPool as e:  # a worker died (native crash, OOM)
                        record((futures[future], DECODE_ERROR, f"the worker process died ({e}); re-run to retry"))
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
