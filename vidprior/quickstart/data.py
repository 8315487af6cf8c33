"""Built-in data from the 1,797 real handwritten digits of scikit-learn (8x8 scans, no download).

Three disjoint groups of digit scans feed three sets, so no digit image used for validation was seen in training:

* ``images/{train,val}/<digit>/*.png`` — 32x32 images, a digit at a random place on a noisy background
  (pre-training, ImageFolder layout);
* ``appearance/`` — Kinetics-style task: 16-frame H.264 clips of a digit moving across the frame in a random
  direction; the label is the digit (appearance dominates). ``train.txt`` / ``val.txt`` are ``path label`` lists;
* ``temporal/`` — Something-Something-style task: the label is the motion ("Moving [something] from left to right",
  "... right to left", "... up", "... down"), the digit is random. SSv2-format ``labels.json`` / ``train.json`` /
  ``validation.json``; flipping or reversing a clip changes its label.

Generation is deterministic (a seeded generator) and cached: a finished folder carries a ``.complete`` stamp with the
generation parameters and is reused as long as they match.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidprior.errors import VidpriorError

VERSION = 2
DIRECTIONS = [
    ("Moving [something] from left to right", (1, 0)),
    ("Moving [something] from right to left", (-1, 0)),
    ("Moving [something] down", (0, 1)),
    ("Moving [something] up", (0, -1)),
]


@dataclass(frozen=True)
class Spec:
    size: int = 32  # frame / image side
    sprite: int = 14  # digit side after upscaling the 8x8 scan
    frames: int = 16
    videos_train: int = 400
    videos_val: int = 200
    images_per_digit: int = 60  # pre-training images per class (train); 1/4 of that for val
    distractors: int = 2  # scrambled-digit distractors in the temporal task
    seed: int = 0


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


def _canvas(spec: Spec, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(0.0, 0.25, size=3)
    noise = rng.normal(0, 0.04, size=(spec.size, spec.size, 3))
    return np.clip(base + noise, 0, 1)


def _paste(canvas: np.ndarray, sprite: np.ndarray, x: float, y: float, color: np.ndarray) -> np.ndarray:
    out = canvas.copy()
    s = sprite.shape[0]
    xi, yi = round(x), round(y)
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(xi, 0), max(yi, 0), min(xi + s, w), min(yi + s, h)
    if x1 <= x0 or y1 <= y0:
        return out
    alpha = sprite[y0 - yi : y1 - yi, x0 - xi : x1 - xi, None]
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - alpha) + color * alpha
    return out


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8, options={"crf": "18", "preset": "veryfast"})
        stream.width = stream.height = frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray((f * 255).astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _start(spec: Spec, velocity: tuple[float, float], rng: np.random.Generator) -> tuple[float, float]:
    """A start position from which an object moving at ``velocity`` stays mostly in view."""
    lo, hi = -spec.sprite * 0.3, spec.size - spec.sprite * 0.7
    out = []
    for v in velocity:
        travel = v * (spec.frames - 1)
        out.append(rng.uniform(max(lo, lo - travel), min(hi, hi - travel)) if abs(travel) < hi - lo else lo)
    return out[0], out[1]


def _clip(
    spec: Spec, objects: list[tuple[np.ndarray, tuple[float, float]]], rng: np.random.Generator
) -> list[np.ndarray]:
    """Frames of ``objects`` (sprite, velocity in pixels per frame) crossing a noisy background."""
    canvas = _canvas(spec, rng)
    placed = [(sprite, v, _start(spec, v, rng), rng.uniform(0.6, 1.0, size=3)) for sprite, v in objects]
    frames = []
    for t in range(spec.frames):
        frame = canvas
        for sprite, (vx, vy), (x0, y0), color in placed:
            frame = _paste(frame, sprite, x0 + vx * t, y0 + vy * t, color)
        frames.append(frame)
    return frames


def _scramble(sprite: np.ndarray, rng: np.random.Generator, blocks: int = 4) -> np.ndarray:
    """A distractor with a digit's ink and texture but no digit shape: its tiles shuffled."""
    step = sprite.shape[0] // blocks
    s = step * blocks
    tiles = [sprite[i : i + step, j : j + step] for i in range(0, s, step) for j in range(0, s, step)]
    order = rng.permutation(len(tiles))
    rows = [np.concatenate([tiles[order[r * blocks + c]] for c in range(blocks)], axis=1) for r in range(blocks)]
    out = np.zeros_like(sprite)
    out[:s, :s] = np.concatenate(rows, axis=0)
    return out


def build(root: str | Path, spec: Spec = Spec(), *, progress: bool = True) -> Path:
    """Generate (or reuse) the quickstart data under ``root``; returns ``root``."""
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
    sprites = {i: _sprite(scans[i], spec.sprite) for i in range(len(scans))}
    total = 10 * (spec.images_per_digit + spec.images_per_digit // 4) + 2 * (spec.videos_train + spec.videos_val)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="building quickstart data", unit="file", dynamic_ncols=True)

    def tick() -> None:
        if bar is not None:
            bar.update()

    # pre-training images
    pool = groups["pretrain"]
    for split, per_digit in (("train", spec.images_per_digit), ("val", spec.images_per_digit // 4)):
        for d in range(10):
            folder = tmp / "images" / split / str(d)
            folder.mkdir(parents=True)
            choices = pool[targets[pool] == d]
            # the val images come from scans the train images do not use
            cut = max(1, len(choices) * 4 // 5)
            choices = choices[:cut] if split == "train" else choices[cut:]
            for k in range(per_digit):
                i = int(rng.choice(choices))
                canvas = _canvas(spec, rng)
                x, y = rng.uniform(0, spec.size - spec.sprite, size=2)
                img = _paste(canvas, sprites[i], x, y, rng.uniform(0.6, 1.0, size=3))
                from PIL import Image

                Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{k:04d}.png")
                tick()
    # video tasks
    (tmp / "appearance" / "videos").mkdir(parents=True)
    (tmp / "temporal" / "videos").mkdir(parents=True)
    labels = {name.replace("[", "").replace("]", ""): str(i) for i, (name, _) in enumerate(DIRECTIONS)}
    (tmp / "temporal" / "labels.json").write_text(json.dumps(labels, indent=1))
    for split, count, group in (
        ("train", spec.videos_train, "video_train"),
        ("val", spec.videos_val, "video_val"),
    ):
        lines, entries = [], []
        for k in range(count):
            # appearance: the digit is the label; any direction, any speed
            i = int(rng.choice(groups[group]))
            angle = rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(0.6, 1.4)
            name = f"{split}_{k:04d}.mp4"
            velocity = (speed * np.cos(angle), speed * np.sin(angle))
            _write_video(tmp / "appearance" / "videos" / name, _clip(spec, [(sprites[i], velocity)], rng))
            lines.append(f"videos/{name} {targets[i]}")
            tick()
            # temporal: the direction is the label; any digit
            i = int(rng.choice(groups[group]))
            # the digit's direction is the label; look-alike distractors (scrambled digits) move in directions of
            # their own, so a model has to find the digit before it can read the motion
            c = int(rng.integers(len(DIRECTIONS)))
            template, (dx, dy) = DIRECTIONS[c]
            speed = rng.uniform(0.8, 1.4)
            objects = [(sprites[i], (dx * speed, dy * speed))]
            for _ in range(spec.distractors):
                j = int(rng.choice(groups[group]))
                ex, ey = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))][1]
                sp = rng.uniform(0.8, 1.4)
                objects.append((_scramble(sprites[j], rng), (ex * sp, ey * sp)))
            vid = f"{split}{k:04d}"
            _write_video(tmp / "temporal" / "videos" / f"{vid}.mp4", _clip(spec, objects, rng))
            entries.append(
                {
                    "id": vid,
                    "label": f"moving digit {targets[i]}",
                    "template": template,
                    "placeholders": [str(targets[i])],
                }
            )
            tick()
        (tmp / "appearance" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (tmp / "temporal" / ("train.json" if split == "train" else "validation.json")).write_text(json.dumps(entries))
    (tmp / "appearance" / "classes.txt").write_text("\n".join(str(d) for d in range(10)) + "\n")
    if bar is not None:
        bar.close()
    (tmp / ".complete").write_text(json.dumps(params))
    tmp.rename(root)
    return root
