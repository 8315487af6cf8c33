"""Quickstart data: real digits, disjoint splits, deterministic and cached; the runner's report on a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidprior.data.lists import read_ssv2, read_video_list, scan_image_folder
from vidprior.quickstart.data import DIRECTIONS, Spec, _digits, _split, build

SMALL = Spec(sprite=20, images_per_digit=8, videos_train=12, videos_val=6, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build(tmp_path_factory.mktemp("qs") / "data", SMALL, progress=False)


def test_formats_are_the_ones_users_have(data):
    images, classes = scan_image_folder(data / "images" / "train")
    assert classes == [str(d) for d in range(10)] and len(images) == 10 * SMALL.images_per_digit
    train = read_video_list(data / "appearance" / "train.txt", root=data / "appearance")
    assert len(train) == SMALL.videos_train and all(0 <= r.label < 10 for r in train)
    records, names = read_ssv2(
        data / "temporal" / "labels.json",
        data / "temporal" / "train.json",
        root=data / "temporal" / "videos",
        suffix=".mp4",
    )
    assert names == [n.replace("[", "").replace("]", "") for n, _ in DIRECTIONS]
    assert len(records) == SMALL.videos_train and all(r.label in range(4) for r in records)
    from vidprior.data.decode import open_video

    with open_video(train[0].path) as reader:
        assert reader.info.num_frames == SMALL.frames and (reader.info.width, reader.info.height) == (32, 32)


def test_validation_digits_are_never_seen_in_training():
    _, targets = _digits()
    groups = _split(targets, np.random.default_rng(0))
    sets = {k: set(v.tolist()) for k, v in groups.items()}
    assert not sets["pretrain"] & sets["video_train"] and not sets["pretrain"] & sets["video_val"]
    assert not sets["video_train"] & sets["video_val"]
    assert sum(len(v) for v in sets.values()) == len(targets) == 1797


def test_generation_is_deterministic_and_cached(data, tmp_path):
    stamp = (data / ".complete").read_text()
    mtime = (data / "appearance" / "train.txt").stat().st_mtime_ns
    assert build(data, SMALL, progress=False) == data
    assert (data / "appearance" / "train.txt").stat().st_mtime_ns == mtime  # reused, not rewritten
    again = build(tmp_path / "again", SMALL, progress=False)
    assert (again / ".complete").read_text() == stamp
    assert (again / "appearance" / "train.txt").read_text() == (data / "appearance" / "train.txt").read_text()
    a = (again / "temporal" / "videos" / "train0003.mp4").read_bytes()
    assert a == (data / "temporal" / "videos" / "train0003.mp4").read_bytes()
    assert json.loads(stamp)["seed"] == 3


def test_runner_compares_the_four_settings_at_equal_budget(tmp_path, monkeypatch):
    """The real runner on a tiny set, one model: every setting runs with its own init and STS placement, (a) sees
    as many images as (b) (pre-training + fine-tuning, to one scratch epoch), and the report holds every number."""
    import yaml
    from PIL import Image

    from vidprior.quickstart import run as qs

    tiny = Spec(sprite=20, images_per_digit=8, videos_train=32, videos_val=8, seed=3)  # 2 batches of 16 clips
    monkeypatch.setattr(qs, "SPEC", tiny)
    monkeypatch.setattr(qs, "PRETRAIN_EPOCHS", 2)  # the recipe warms up for one epoch
    monkeypatch.setattr(qs, "FINETUNE_EPOCHS", 1)
    summary = qs.run(tmp_path, seeds=1, models=["slowonly_tiny"], progress=False)
    report = tmp_path / "report"
    saved = json.loads((report / "results.json").read_text())
    assert saved["table"] == summary["table"]
    assert set(saved["table"]) == {f"slowonly_tiny/{t}/{s}" for t in ("appearance", "temporal") for s in "abcd"}
    rows = {(r["task"], r["setting"]): r for r in saved["results"]}
    epoch_images = tiny.videos_train * 8
    for task in ("appearance", "temporal"):
        a, b = rows[(task, "a")], rows[(task, "b")]
        assert a["images_seen"] > rows[(task, "b")]["images_seen"] - rows[("images", "pretrain")]["images_seen"]
        assert abs(a["images_seen"] - b["images_seen"]) <= epoch_images / 2 + 1
        assert all(0.0 <= rows[(task, s)]["top1"] <= 100.0 for s in "abcd")
        cfgs = {s: yaml.safe_load((tmp_path / rows[(task, s)]["run_dir"] / "config.yaml").read_text()) for s in "abcd"}
        assert cfgs["a"]["init"]["source"] == "scratch" and not cfgs["a"]["model"]["sts"]
        assert cfgs["b"]["init"]["mode"] == "center" and not cfgs["b"]["model"]["sts"]
        assert cfgs["c"]["init"]["mode"] == "center" and cfgs["c"]["model"]["sts"]
        assert cfgs["d"]["init"]["mode"] == "mean" and cfgs["d"]["model"]["sts"]
        assert cfgs["b"]["init"]["checkpoint"].endswith("pretrain/best.safetensors")
    md = (report / "report.md").read_text()
    assert "| SlowOnly-style (3x1x1) | temporal (SSv2-like) |" in md and "## Findings" in md
    for png in ("accuracy.png", "budget.png", "curves.png"):
        with Image.open(report / png) as im:
            assert im.format == "PNG" and im.size[0] > 200
