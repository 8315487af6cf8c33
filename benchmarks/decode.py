"""Clip decoding throughput: vidprior's PyAV reader against a naive PyAV sampler and the other decoders installed.

    .venv/bin/python benchmarks/decode.py [--videos 4] [--clips 16] [--views 4] [--repeats 3] [--keep DIR]

Writes synthetic 320p H.264 videos (568x320, 30 fps, 10 s = 300 frames, moving texture, every frame carrying its
index as a barcode) into a temporary folder, once with x264's default keyframe interval (250) and once with a
keyframe every 16 frames (mmaction2's "dense" re-encode). Every sample opens the file, as a DataLoader worker does.
Tasks:

* dense 8x8: 8 frames at interval 8 from a random start (Kinetics training clip);
* SSv2 8 segments: one random frame from each of 8 equal segments (TSN/TSM training clip);
* 10-clip multi-view: 10 uniformly spaced 8x8 clips of one video (Kinetics testing; unit: videos/s).

Methods, timed interleaved in the same run, one thread per process (``torch.set_num_threads(1)``, decoders with one
thread): ``vidprior`` (:func:`vidprior.data.decode.open_video`, ``get_frames`` / ``get_clips``); ``PyAV naive``
(the usual hand-written sampler: for every frame, ``container.seek`` to its timestamp and decode forward to it);
``decord`` and ``torchcodec`` when importable (one batched call per sample, all indices of all views at once for
multi-view). A second table compares ``get_clips`` (the union of the 10 views decoded once) with 10 ``get_frames``
calls on the same open reader. Every returned frame is checked against its barcode (column "wrong").
Prints Markdown tables of medians over ``--repeats`` rounds and same-run ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.video_fixtures import read_index, write_video
from vidprior.data.decode import available_backends, open_video

WIDTH, HEIGHT, FPS, SECONDS = 568, 320, 30, 10


# ---- samples --------------------------------------------------------------------------------------------------


def dense(n: int, rng: random.Random, frames: int = 8, interval: int = 8) -> list[int]:
    start = rng.randrange(0, n - (frames - 1) * interval)
    return [start + interval * j for j in range(frames)]


def segments(n: int, rng: random.Random, num: int = 8) -> list[int]:
    seg = n / num
    return [min(n - 1, int(seg * j + rng.random() * seg)) for j in range(num)]


def multi_view(n: int, clips: int = 10, frames: int = 8, interval: int = 8) -> list[list[int]]:
    span = (frames - 1) * interval + 1
    step = (n - span) / clips
    return [[int(step * k + step / 2) + interval * j for j in range(frames)] for k in range(clips)]


# ---- methods: each maps (path, list of clips) -> list of (T, 3, H, W) uint8 tensors ------------------------------


def vidprior_frames(path: str, clips: list[list[int]]) -> list[torch.Tensor]:
    with open_video(path) as r:
        return [r.get_frames(c) for c in clips]


def vidprior_clips(path: str, clips: list[list[int]]) -> list[torch.Tensor]:
    with open_video(path) as r:
        return r.get_clips(clips)


def pyav_naive(path: str, clips: list[list[int]]) -> list[torch.Tensor]:
    """Seek to every frame's timestamp (backward to its keyframe) and decode forward to it."""
    import av

    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        tb, rate = stream.time_base, stream.average_rate or Fraction(FPS)
        start = stream.start_time or 0
        for clip in clips:
            frames = []
            for i in clip:
                target = start + round(Fraction(i) / rate / tb)
                container.seek(target, stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.pts >= target:
                        frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
                        break
            out.append(torch.stack(frames))
    return out


def decord_batch(path: str, clips: list[list[int]]) -> list[torch.Tensor]:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    flat = [i for c in clips for i in c]
    frames = torch.from_numpy(vr.get_batch(flat).asnumpy()).permute(0, 3, 1, 2)
    return list(frames.split([len(c) for c in clips]))


def torchcodec_batch(path: str, clips: list[list[int]]) -> list[torch.Tensor]:
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(path, seek_mode="exact", dimension_order="NCHW", num_ffmpeg_threads=1)
    flat = [i for c in clips for i in c]
    frames = dec.get_frames_at(indices=flat).data
    return list(frames.split([len(c) for c in clips]))


# ---- timing ---------------------------------------------------------------------------------------------------


def run_rounds(
    methods: dict[str, Callable], samples: list[tuple[str, list[list[int]]]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Samples/s per round for each method (interleaved, alternating order), and wrong frames per method (every frame
    of the first round is checked, after the timing)."""
    rates: dict[str, list[float]] = {m: [] for m in methods}
    wrong = dict.fromkeys(methods, 0)
    for r in range(repeats):
        order = list(methods.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            t0 = time.perf_counter()
            results = [fn(path, clips) for path, clips in samples]
            rates[name].append(len(samples) / (time.perf_counter() - t0))
            if r == 0:
                for (_, clips), result in zip(samples, results, strict=True):
                    for clip, got in zip(clips, result, strict=True):
                        wrong[name] += sum(read_index(f) != i for f, i in zip(got, clip, strict=True))
            del results
    return rates, wrong


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=4, help="videos per keyframe setting")
    p.add_argument("--clips", type=int, default=16, help="training clips per round and task")
    p.add_argument("--views", type=int, default=4, help="multi-view samples (videos) per round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", help="write the videos here and keep them (reused when present)")
    args = p.parse_args()
    torch.set_num_threads(1)
    import av

    tmp = None
    root = Path(args.keep) if args.keep else Path(tmp := tempfile.mkdtemp(prefix="vidprior-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    n = FPS * SECONDS
    gops = {"keyint 250 (x264 default)": 250, "keyint 16": 16}
    files: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for label, gop in gops.items():
        files[label] = []
        for v in range(args.videos):
            path = root / f"g{gop}_{v}.mp4"
            if not path.exists():
                write_video(path, n, width=WIDTH, height=HEIGHT, fps=FPS, gop=gop, texture=True, crf=23)
            files[label].append(str(path))
    sizes = [os.path.getsize(f) for fs in files.values() for f in fs]
    gen_s = time.perf_counter() - t0

    backends = available_backends()
    raw: dict[str, Callable] = {"PyAV naive": pyav_naive}
    if "decord" in backends:
        raw["decord"] = decord_batch
    if "torchcodec" in backends:
        raw["torchcodec"] = torchcodec_batch
    versions = f"av {av.__version__}" + "".join(
        f", {b} {__import__(b).__version__}" for b in ("decord", "torchcodec") if b in backends
    )
    print(
        f"# clip decoding, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}, {versions}; 1 thread per process\n"
    )
    print(
        f"Videos: {args.videos} per setting, H.264 {WIDTH}x{HEIGHT}, {FPS} fps, {n} frames, crf 23, "
        f"{statistics.mean(sizes) / 1e6:.2f} MB each on average (written in {gen_s:.0f} s). "
        f"Each sample opens the file. Medians of {args.repeats} rounds; {args.clips} clips per round "
        f"({args.views} videos for multi-view).\n"
    )
    names = ["vidprior", *raw]
    print(
        "| task | keyframes | "
        + " | ".join(f"{m} /s" for m in names)
        + " | "
        + " | ".join(f"vidprior / {m}" for m in raw)
        + " | wrong frames |"
    )
    print("| --- | --- | " + " | ".join("---:" for _ in names) + " | " + " | ".join("---:" for _ in raw) + " | ---: |")
    multi_rows = []
    rng = random.Random(0)
    for task in ("dense 8x8 clips", "SSv2 8-segment clips", "10-clip multi-view (videos)"):
        for label, paths in files.items():
            if task.startswith("10-clip"):
                samples = [(paths[i % len(paths)], multi_view(n)) for i in range(args.views)]
                methods = {"vidprior": vidprior_clips, **raw, "get_frames x10": vidprior_frames}
            else:
                draw = dense if task.startswith("dense") else segments
                samples = [(paths[i % len(paths)], [draw(n, rng)]) for i in range(args.clips)]
                methods = {"vidprior": vidprior_frames, **raw}
            rates, wrong = run_rounds(methods, samples, args.repeats)
            med = {m: statistics.median(v) for m, v in rates.items()}
            ratios = {m: statistics.median(a / b for a, b in zip(rates["vidprior"], rates[m])) for m in methods}
            print(
                f"| {task} | {label} | "
                + " | ".join(f"{med[m]:.1f}" for m in names)
                + " | "
                + " | ".join(f"{ratios[m]:.2f}" for m in raw)
                + f" | {sum(wrong.values())} |"
            )
            if task.startswith("10-clip"):
                multi_rows.append((label, med["vidprior"], med["get_frames x10"], ratios["get_frames x10"]))
    print(
        "\n| multi-view, 10 clips of 8x8 per video | keyframes | get_clips (decode once) videos/s "
        "| get_frames x10 on the open reader videos/s | ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for label, once, each, ratio in multi_rows:
        print(f"| decode-once vs clip-by-clip | {label} | {once:.1f} | {each:.1f} | {ratio:.2f} |")
    missing = [b for b in ("decord", "torchcodec") if b not in backends]
    if missing:
        print(f"\nNot installed here, so not measured: {', '.join(missing)}.")
    if tmp:
        for f in Path(tmp).iterdir():
            f.unlink()
        Path(tmp).rmdir()


if __name__ == "__main__":
    main()
