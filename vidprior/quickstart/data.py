"""Built-in data from the 1,797 real handwritten digits of scikit-learn (8x8 scans, no download).

Three disjoint groups of digit scans feed three sets, so no validation image or clip shows a scan seen in training
or pre-training (``meta.json`` files record which scan each file shows):

* ``images/{train,val}/<digit>/*.png``: a digit at a random place on a noisy background (pre-training,
  ImageFolder layout). ``train`` and ``val`` use disjoint scans of the pre-training group;
* ``appearance/``: the Kinetics-like task. One digit moves across the frame in a random direction; the label is the
  digit. ``train.txt`` / ``val.txt`` are ``path label`` lists;
* ``twolane/``: the SS-V2-like task and its control, on the same clips. Two real digits, one even and one odd, move
  in two lanes (top / bottom with horizontal motion, left / right with vertical motion) in opposite directions. In
  ``train.json`` / ``validation.json`` (SS-V2 format) the label is the direction of the *even* digit: motion energy
  is the same for every label, so the label is readable only after recognising the digits. In ``control_*.json``
  the label is the direction of the digit in the first lane (top or left), which needs no recognition. Four
  classes, two reversal pairs; flipping or reversing a clip changes its label.

Every clip is a :class:`TwoLaneClip` (or :class:`AppearanceClip`): plain parameters from which the frames and the
labels are computed, so the rules can be checked without a video. Generation is deterministic by construction
(seeded parameters, lossless x264 with one thread) and cached: a finished folder carries a ``.complete`` stamp with the
parameters and is reused as long as they match.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from vidprior.errors import VidpriorError

VERSION = 4
DIRECTIONS = [
    ("Moving [something] from left to right", (1, 0)),
    ("Moving [something] from right to left", (-1, 0)),
    ("Moving [something] down", (0, 1)),
    ("Moving [something] up", (0, -1)),
]
REVERSE = {0: 1, 1: 0, 2: 3, 3: 2}  # the class of the time-reversed clip


@dataclass(frozen=True)
class Spec:
    size: int = 32  # frame / image side
    sprite: int = 14  # digit side after upscaling the 8x8 scan (two lanes of size / 2)
    frames: int = 16
    videos_train: int = 400
    videos_val: int = 200
    images_per_digit: int = 200  # pre-training images per class (train); 1/4 of that for val
    seed: int = 0


@dataclass(frozen=True)
class Mover:
    """A digit scan in a lane: position along the motion axis ``start + step * t`` (pixels, multiples of 1/8 so
    forward and reversed clips round identically), ``across`` its offset inside the lane, ``color`` RGB in 0..1."""

    scan: int
    digit: int
    lane: int
    start: float
    step: float
    across: int
    color: tuple[float, float, float]


@dataclass(frozen=True)
class TwoLaneClip:
    horizontal: bool  # lanes top / bottom and horizontal motion; else left / right and vertical motion
    movers: tuple[Mover, Mover]
    background: int  # seed of the noisy background


@dataclass(frozen=True)
class AppearanceClip:
    scan: int
    digit: int
    x: float
    y: float
    vx: float
    vy: float
    color: tuple[float, float, float]
    background: int


def direction(clip: TwoLaneClip, mover: Mover) -> int:
    """Class index (into :data:`DIRECTIONS`) of one mover's motion."""
    forward = mover.step > 0
    if clip.horizontal:
        return 0 if forward else 1
    return 2 if forward else 3


def label_even(clip: TwoLaneClip) -> int:
    """The SS-V2-like task: the direction of the even digit."""
    (even,) = [m for m in clip.movers if m.digit % 2 == 0]
    return direction(clip, even)


def label_control(clip: TwoLaneClip) -> int:
    """The control: the direction of the digit in lane 0 (top or left), whatever the digits are."""
    (first,) = [m for m in clip.movers if m.lane == 0]
    return direction(clip, first)


def reverse(clip: TwoLaneClip, frames: int) -> TwoLaneClip:
    """The same clip played backwards (every mover ends where it started)."""
    movers = tuple(replace(m, start=m.start + m.step * (frames - 1), step=-m.step) for m in clip.movers)
    return replace(clip, movers=movers)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ drawing
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is in requirements.txt
        raise VidpriorError("the quickstart data needs scikit-learn (pip install scikit-learn)") from None
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(int)


def _split(targets: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per digit: 50% pre-training, 30% video training, 20% video validation (disjoint)."""
    groups: dict[str, list[int]] = {"pretrain": [], "video_train": [], "video_val": []}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(targets == d))
        a, b = int(0.5 * len(idx)), int(0.8 * len(idx))
        groups["pretrain"] += idx[:a].tolist()
        groups["video_train"] += idx[a:b].tolist()
        groups["video_val"] += idx[b:].tolist()
    return {k: np.array(v) for k, v in groups.items()}


def _sprite(scan: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray((scan * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _canvas(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 0.25, size=3)
    return np.clip(base + rng.normal(0, 0.04, size=(size, size, 3)), 0, 1)


def _paste(canvas: np.ndarray, sprite: np.ndarray, x: float, y: float, color) -> np.ndarray:
    out = canvas.copy()
    s = sprite.shape[0]
    xi, yi = round(x), round(y)
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(xi, 0), max(yi, 0), min(xi + s, w), min(yi + s, h)
    if x1 <= x0 or y1 <= y0:
        return out
    alpha = sprite[y0 - yi : y1 - yi, x0 - xi : x1 - xi, None]
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - alpha) + np.asarray(color) * alpha
    return out


def render_twolane(clip: TwoLaneClip, spec: Spec, sprites: Callable[[int], np.ndarray]) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` in 0..1 of a two-lane clip; ``sprites(scan)`` gives a scan's upscaled image."""
    canvas = _canvas(spec.size, clip.background)
    lane = spec.size // 2
    frames = []
    for t in range(spec.frames):
        frame = canvas
        for m in clip.movers:
            along, across = m.start + m.step * t, m.lane * lane + m.across
            x, y = (along, across) if clip.horizontal else (across, along)
            frame = _paste(frame, sprites(m.scan), x, y, m.color)
        frames.append(frame)
    return np.stack(frames)


def render_appearance(clip: AppearanceClip, spec: Spec, sprites: Callable[[int], np.ndarray]) -> np.ndarray:
    canvas = _canvas(spec.size, clip.background)
    s = sprites(clip.scan)
    return np.stack(
        [_paste(canvas, s, clip.x + clip.vx * t, clip.y + clip.vy * t, clip.color) for t in range(spec.frames)]
    )


def _eighths(x: float) -> float:
    return round(x * 8) / 8


def sample_twolane(
    spec: Spec, even_pool: np.ndarray, odd_pool: np.ndarray, targets: np.ndarray, rng: np.random.Generator
) -> TwoLaneClip:
    """Random parameters: an even and an odd scan, random lanes, opposite directions, speeds and offsets."""
    horizontal = bool(rng.integers(2))
    sign = 1.0 if rng.integers(2) else -1.0  # the even digit's direction
    even_lane = int(rng.integers(2))
    lane = spec.size // 2
    movers = []
    for scan, ln, sgn in (
        (int(rng.choice(even_pool)), even_lane, sign),
        (int(rng.choice(odd_pool)), 1 - even_lane, -sign),
    ):
        step = sgn * _eighths(rng.uniform(0.8, 1.4))
        travel = abs(step) * (spec.frames - 1)
        lo, hi = -spec.sprite * 0.25, spec.size - spec.sprite * 0.75  # start range that keeps most of it in view
        first = _eighths(rng.uniform(lo, max(lo, hi - travel)))
        start = first if step > 0 else first + travel
        across = int(rng.integers(0, max(1, lane - spec.sprite + 1)))
        color = tuple(float(c) for c in np.round(rng.uniform(0.6, 1.0, size=3), 3))
        movers.append(Mover(scan, int(targets[scan]), ln, start, step, across, color))  # type: ignore[arg-type]
    return TwoLaneClip(horizontal, (movers[0], movers[1]), int(rng.integers(2**31)))


def sample_appearance(spec: Spec, pool: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> AppearanceClip:
    scan = int(rng.choice(pool))
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    lo, hi = -spec.sprite * 0.3, spec.size - spec.sprite * 0.7
    pos = []
    for v in (vx, vy):
        travel = v * (spec.frames - 1)
        pos.append(float(rng.uniform(max(lo, lo - travel), min(hi, hi - travel))))
    color = tuple(float(c) for c in np.round(rng.uniform(0.6, 1.0, size=3), 3))
    return AppearanceClip(
        scan, int(targets[scan]), pos[0], pos[1], float(vx), float(vy), color, int(rng.integers(2**31))
    )  # type: ignore[arg-type]


def write_video(path: Path, frames: np.ndarray) -> None:
    """Lossless H.264 (``qp=0``, 4:2:0): the decoded frames are the frames' YUV 4:2:0 conversion whatever x264
    decides. With lossy settings x264 gave different pixels for identical frames from run to run (up to 16 grey
    levels), even with one thread, so the data would differ between two builds."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8, options={"qp": "0", "preset": "veryfast", "threads": "1"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray((f * 255).astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


# ------------------------------------------------------------------------------------------------ building
def _ssv2_entries(ids: list[str], labels: list[int], clips: list[TwoLaneClip]) -> list[dict]:
    out = []
    for vid, label, clip in zip(ids, labels, clips, strict=True):
        digits = [str(m.digit) for m in sorted(clip.movers, key=lambda m: m.lane)]
        template = DIRECTIONS[label][0]
        out.append(
            {
                "id": vid,
                "label": template.replace("[something]", "a digit"),
                "template": template,
                "placeholders": digits,
            }
        )
    return out


def build(root: str | Path, spec: Spec = Spec(), *, progress: bool = True) -> Path:
    """Generate (or reuse) the quickstart data under ``root``; returns ``root``."""
    from PIL import Image

    root = Path(root)
    stamp = root / ".complete"
    params = {"version": VERSION, **asdict(spec)}
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return root
    if root.exists():
        shutil.rmtree(root)
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    rng = np.random.default_rng(spec.seed)
    scans, targets = _digits()
    groups = _split(targets, rng)
    cache: dict[int, np.ndarray] = {}

    def sprites(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = _sprite(scans[i], spec.sprite)
        return cache[i]

    total = 10 * (spec.images_per_digit + spec.images_per_digit // 4) + 2 * (spec.videos_train + spec.videos_val)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="building quickstart data", unit="file", dynamic_ncols=True)

    def tick() -> None:
        if bar is not None:
            bar.update()

    # pre-training images; val images come from scans the train images do not use
    pool = groups["pretrain"]
    image_meta: dict[str, dict[str, int]] = {}
    for split, per_digit in (("train", spec.images_per_digit), ("val", spec.images_per_digit // 4)):
        for d in range(10):
            folder = tmp / "images" / split / str(d)
            folder.mkdir(parents=True)
            choices = pool[targets[pool] == d]
            cut = max(1, len(choices) * 4 // 5)
            choices = choices[:cut] if split == "train" else choices[cut:]
            for k in range(per_digit):
                i = int(rng.choice(choices))
                x, y = rng.uniform(0, spec.size - spec.sprite, size=2)
                canvas = _canvas(spec.size, int(rng.integers(2**31)))
                img = _paste(canvas, sprites(i), x, y, rng.uniform(0.6, 1.0, size=3))
                name = f"{split}/{d}/{k:04d}.png"
                Image.fromarray((img * 255).astype(np.uint8)).save(tmp / "images" / name)
                image_meta[name] = {"scan": i, "digit": d}
                tick()
    (tmp / "images" / "meta.json").write_text(json.dumps(image_meta))
    # video tasks
    app, two = tmp / "appearance", tmp / "twolane"
    (app / "videos").mkdir(parents=True)
    (two / "videos").mkdir(parents=True)
    labels = {name.replace("[", "").replace("]", ""): str(i) for i, (name, _) in enumerate(DIRECTIONS)}
    (two / "labels.json").write_text(json.dumps(labels, indent=1))
    for split, count, group in (("train", spec.videos_train, "video_train"), ("val", spec.videos_val, "video_val")):
        members = groups[group]
        even_pool, odd_pool = members[targets[members] % 2 == 0], members[targets[members] % 2 == 1]
        lines, app_meta, ids, clips = [], [], [], []
        for k in range(count):
            a = sample_appearance(spec, members, targets, rng)
            name = f"videos/{split}_{k:04d}.mp4"
            write_video(app / name, render_appearance(a, spec, sprites))
            lines.append(f"{name} {a.digit}")
            app_meta.append({"path": name, **asdict(a)})
            tick()
            c = sample_twolane(spec, even_pool, odd_pool, targets, rng)
            vid = f"{split}{k:04d}"
            write_video(two / "videos" / f"{vid}.mp4", render_twolane(c, spec, sprites))
            ids.append(vid)
            clips.append(c)
            tick()
        (app / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (app / f"meta_{split}.json").write_text(json.dumps(app_meta))
        ssv2 = "train" if split == "train" else "validation"
        (two / f"{ssv2}.json").write_text(json.dumps(_ssv2_entries(ids, [label_even(c) for c in clips], clips)))
        control = _ssv2_entries(ids, [label_control(c) for c in clips], clips)
        (two / f"control_{ssv2}.json").write_text(json.dumps(control))
        (two / f"meta_{split}.json").write_text(
            json.dumps([{"id": i, **asdict(c)} for i, c in zip(ids, clips, strict=True)])
        )
    (app / "classes.txt").write_text("\n".join(str(d) for d in range(10)) + "\n")
    if bar is not None:
        bar.close()
    (tmp / ".complete").write_text(json.dumps(params))
    tmp.rename(root)
    return root


def load_twolane_meta(path: str | Path) -> list[tuple[str, TwoLaneClip]]:
    """The clips of a ``twolane/meta_<split>.json`` file, as (video id, parameters)."""
    out = []
    for row in json.loads(Path(path).read_text()):
        movers = tuple(Mover(**{**m, "color": tuple(m["color"])}) for m in row["movers"])
        out.append((row["id"], TwoLaneClip(row["horizontal"], movers, row["background"])))  # type: ignore[arg-type]
    return out
