"""Quickstart data: the two-lane task's label rules, disjoint digit scans, deterministic and cached generation."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vidprior.data.lists import read_ssv2, read_video_list, scan_image_folder
from vidprior.quickstart.data import (
    DIRECTIONS,
    REVERSE,
    Spec,
    _digits,
    _split,
    _sprite,
    build,
    label_control,
    label_even,
    load_twolane_meta,
    render_twolane,
    reverse,
    sample_twolane,
)

SMALL = Spec(images_per_digit=8, videos_train=12, videos_val=6, seed=3)


@pytest.fixture(scope="module")
def digits():
    scans, targets = _digits()
    cache: dict[int, np.ndarray] = {}

    def sprites(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = _sprite(scans[i], SMALL.sprite)
        return cache[i]

    return targets, sprites


@pytest.fixture(scope="module")
def clips(digits):
    targets, _ = digits
    rng = np.random.default_rng(11)
    pool = np.arange(len(targets))
    even, odd = pool[targets % 2 == 0], pool[targets % 2 == 1]
    return [sample_twolane(SMALL, even, odd, targets, rng) for _ in range(40)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build(tmp_path_factory.mktemp("qs") / "data", SMALL, progress=False)


def _decode(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_even_label_follows_the_even_digit_and_flips_when_it_reverses(clips, digits):
    _, sprites = digits
    for clip in clips:
        even = next(m for m in clip.movers if m.digit % 2 == 0)
        odd = next(m for m in clip.movers if m.digit % 2 == 1)
        assert even.step * odd.step < 0  # opposite directions: the same motion energy for every label
        back = reverse(clip, SMALL.frames)
        # the reversed parameters draw exactly the reversed clip, and its label is the reverse class
        np.testing.assert_array_equal(render_twolane(back, SMALL, sprites), render_twolane(clip, SMALL, sprites)[::-1])
        assert label_even(back) == REVERSE[label_even(clip)] != label_even(clip)
        # reversing only the even digit flips the label; reversing only the odd digit does not change it
        only_even = replace(clip, movers=tuple(replace(m, step=-m.step) if m is even else m for m in clip.movers))
        only_odd = replace(clip, movers=tuple(replace(m, step=-m.step) if m is odd else m for m in clip.movers))
        assert label_even(only_even) == REVERSE[label_even(clip)]
        assert label_even(only_odd) == label_even(clip)
    labels = {label_even(c) for c in clips}
    assert labels == {0, 1, 2, 3}  # both lane orientations, both directions


def test_control_label_ignores_digit_identity(clips):
    for clip in clips:
        a, b = clip.movers
        # the two digits swap places (each lane keeps its motion): the control keeps its label ...
        swapped = replace(clip, movers=(replace(a, scan=b.scan, digit=b.digit), replace(b, scan=a.scan, digit=a.digit)))
        assert label_control(swapped) == label_control(clip)
        # ... while the even-digit label follows the even digit into the other lane, whose motion is reversed
        assert label_even(swapped) == REVERSE[label_even(clip)]
        # any other pair of digits in the same lanes: same control label
        other = replace(clip, movers=(replace(a, digit=(a.digit + 3) % 10), replace(b, digit=(b.digit + 3) % 10)))
        assert label_control(other) == label_control(clip)
    # the two labels disagree on the clips where the even digit is not in the first lane
    disagree = [c for c in clips if label_even(c) != label_control(c)]
    assert disagree and all(next(m for m in c.movers if m.digit % 2 == 0).lane == 1 for c in disagree)


def test_formats_labels_and_pixels_of_the_built_data(data, digits):
    _, sprites = digits
    images, classes = scan_image_folder(data / "images" / "train")
    assert classes == [str(d) for d in range(10)] and len(images) == 10 * SMALL.images_per_digit
    train = read_video_list(data / "appearance" / "train.txt", root=data / "appearance")
    assert len(train) == SMALL.videos_train and all(0 <= r.label < 10 for r in train)
    two = data / "twolane"
    meta = dict(load_twolane_meta(two / "meta_train.json"))
    for split_file, rule in (("train.json", label_even), ("control_train.json", label_control)):
        records, names = read_ssv2(two / "labels.json", two / split_file, root=two / "videos", suffix=".mp4")
        assert names == [n.replace("[", "").replace("]", "") for n, _ in DIRECTIONS]
        assert len(records) == SMALL.videos_train
        for r in records:
            assert r.label == rule(meta[r.video_id])
    # the video shows what its parameters say: far closer to their drawing than to the reversed clip's
    for vid in ("train0002", "train0005"):
        frames = _decode(two / "videos" / f"{vid}.mp4").astype(float)
        drawn = render_twolane(meta[vid], SMALL, sprites) * 255
        backwards = render_twolane(reverse(meta[vid], SMALL.frames), SMALL, sprites) * 255
        assert frames.shape == drawn.shape == (SMALL.frames, 32, 32, 3)
        assert np.abs(frames - drawn).mean() < 0.5 * np.abs(frames - backwards).mean()


def test_no_validation_clip_shows_a_scan_seen_in_training_or_pretraining(data):
    image_meta = json.loads((data / "images" / "meta.json").read_text())
    pre_train = {v["scan"] for k, v in image_meta.items() if k.startswith("train/")}
    pre_val = {v["scan"] for k, v in image_meta.items() if k.startswith("val/")}
    assert pre_train and pre_val and not pre_train & pre_val

    def scans(task: str, split: str) -> set[int]:
        rows = json.loads((data / task / f"meta_{split}.json").read_text())
        if task == "twolane":
            return {m["scan"] for r in rows for m in r["movers"]}
        return {r["scan"] for r in rows}

    for task in ("twolane", "appearance"):
        train, val = scans(task, "train"), scans(task, "val")
        assert train and val
        assert not val & (train | pre_train | pre_val)
        assert not train & (pre_train | pre_val)
    _, targets = _digits()
    groups = _split(targets, np.random.default_rng(0))
    assert sum(len(v) for v in groups.values()) == len(set().union(*(set(v.tolist()) for v in groups.values()))) == 1797


def test_generation_is_deterministic_and_cached(data, tmp_path):
    mtime = (data / "appearance" / "train.txt").stat().st_mtime_ns
    assert build(data, SMALL, progress=False) == data
    assert (data / "appearance" / "train.txt").stat().st_mtime_ns == mtime  # reused, not rewritten
    again = build(tmp_path / "again", SMALL, progress=False)
    for name in ("appearance/train.txt", "appearance/val.txt", "twolane/train.json", "twolane/control_validation.json"):
        assert (again / name).read_text() == (data / name).read_text()
    videos = [*sorted((data / "twolane" / "videos").glob("*.mp4"))[:6], data / "appearance" / "videos" / "val_0001.mp4"]
    for video in videos:
        np.testing.assert_array_equal(_decode(again / video.relative_to(data)), _decode(video))
    assert json.loads((again / ".complete").read_text())["seed"] == 3
    other = build(tmp_path / "other", replace(SMALL, seed=4), progress=False)
    assert (other / "twolane" / "train.json").read_text() != (data / "twolane" / "train.json").read_text()
