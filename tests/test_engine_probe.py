"""Paper Table 1 (linear probing of the temporal slices t1, t2, t3 of a 3D model trained on video) and Table 8
(image pre-training on the frames of a video data set), through ``image_model(model, tap)``, ``train.trainable``,
``data.frames_per_video`` and the real CLI on generated data."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests._util import randomize, run_cli, write_color_image, write_color_video
from tests.helpers.ports import free_port
from vidprior import create_model, image_model
from vidprior.errors import VidpriorError

TINY_MODELS = ["slowonly_tiny", "csn_tiny", "x3d_tiny", "r2plus1d_tiny", "slowfast_tiny"]


def _slice(conv: nn.Conv3d, tap: int) -> torch.Tensor:
    """The expected 2D kernel: the one-frame tap ``pt`` moved by ``tap`` (1-tap convs: their only tap)."""
    kt, pt = conv.kernel_size[0], conv.padding[0]
    return conv.weight[:, :, 0 if kt == 1 else pt + tap]


# ------------------------------------------------------------------------------------------------ image_model(tap)
@pytest.mark.parametrize("name", TINY_MODELS)
@pytest.mark.parametrize("tap", [-1, 0, 1])
def test_image_model_tap_takes_that_temporal_slice_of_every_conv(name, tap):
    model = randomize(create_model(name, num_classes=5), seed=3).eval()
    view = image_model(model, tap=tap)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    views = dict(view.named_modules())
    multi = 0
    for n, conv in convs.items():
        conv2d = views[n]
        assert isinstance(conv2d, nn.Conv2d) and not isinstance(conv2d, nn.Conv3d), n
        assert torch.equal(conv2d.weight, _slice(conv, tap)), n
        if conv.bias is not None:
            assert torch.equal(conv2d.bias, conv.bias), n
        if conv.kernel_size[0] == 1:
            assert torch.equal(conv2d.weight, conv.weight[:, :, 0]), n  # kt = 1: unchanged whatever the tap
        else:
            multi += 1
            if conv.kernel_size[0] == 3 and conv.padding[0] == 1:  # slice 0/1/2 = t1/t2/t3
                assert torch.equal(conv2d.weight, conv.weight[:, :, tap + 1]), n
    assert multi > 0  # every tiny model has temporal kernels, so the tap matters
    # everything but the multi-tap kernels is the same as in the default (t2) view, which tap=0 reproduces exactly
    ref, got = image_model(model).state_dict(), view.state_dict()
    multi_tap = {f"{n}.weight" for n, c in convs.items() if c.kernel_size[0] > 1}
    assert ref.keys() == got.keys()
    for k in ref:
        if k not in multi_tap or tap == 0:
            assert torch.equal(ref[k], got[k]), k
    after = dict(model.named_modules())
    assert all(isinstance(after[n], nn.Conv3d) for n in convs)  # the 3D model itself is not modified


def test_image_model_tap_on_5_tap_kernels_counts_from_the_centre():
    model = randomize(create_model("x3d_tiny", num_classes=5), seed=1)
    five = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv3d) and m.kernel_size[0] == 5}
    assert five  # X3D's 5x1x1 stem conv
    for tap in (-1, 1):
        view = dict(image_model(model, tap=tap).named_modules())
        for n, conv in five.items():
            assert torch.equal(view[n].weight, conv.weight[:, :, 2 + tap]), n


def test_image_model_tap_zero_is_the_default_view():
    model = randomize(create_model("slowonly_tiny", num_classes=5), seed=2).eval()
    a, b = image_model(model).state_dict(), image_model(model, tap=0).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(image_model(model, tap=0)(x), model(x.unsqueeze(2)))  # one-frame clip


def test_image_model_bad_tap_names_the_conv():
    model = create_model("slowonly_tiny", num_classes=5)
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv3d) and m.kernel_size[0] == 3)
    for tap in (2, -2):
        with pytest.raises(VidpriorError, match=re.escape(first) + r" has temporal kernel 3"):
            image_model(model, tap=tap)
    with pytest.raises(VidpriorError, match=r"tap=1\.5"):
        image_model(model, tap=1.5)
    with pytest.raises(VidpriorError, match="tap=True"):
        image_model(model, tap=True)
    # X3D: +-2 fits its 5-tap stem but not its 3x3x3 convs, which the error names
    x3d = create_model("x3d_tiny", num_classes=5)
    with pytest.raises(VidpriorError, match=r"backbone\.\S+ has temporal kernel 3"):
        image_model(x3d, tap=2)


# ------------------------------------------------------------------------------------------------ train.trainable
def test_freeze_parameters_and_frozen_modules():
    from vidprior.engine.config import ConfigError
    from vidprior.engine.freezing import freeze_parameters, frozen_modules

    model = image_model(create_model("slowonly_tiny", num_classes=3))
    assert freeze_parameters(model, None) == [n for n, _ in model.named_parameters()]
    assert frozen_modules(model) == []
    names = freeze_parameters(model, ["cls_head.*"])
    assert names == ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == names
    frozen = frozen_modules(model)
    assert frozen == [model.backbone]  # the largest frozen sub-tree; the head's dropout keeps training mode
    with pytest.raises(ConfigError, match=r"pattern 'head\.\*' matches no parameter.*cls_head\.fc_cls\.weight"):
        freeze_parameters(model, ["cls_head.*", "head.*"])


def test_optimizer_holds_only_trainable_parameters():
    from vidprior.engine.config import OptimCfg
    from vidprior.engine.freezing import freeze_parameters
    from vidprior.engine.optim import build_optimizer

    model = create_model("slowonly_tiny", num_classes=3)
    freeze_parameters(model, ["cls_head.fc_cls.weight", "backbone.layer4.*.bn.*"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    for no_wd in (False, True):
        opt = build_optimizer(model, OptimCfg(no_weight_decay_on_norm_and_bias=no_wd), 16)
        assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(VidpriorError, match="no trainable parameter"):
        build_optimizer(model, OptimCfg(), 16)


def test_config_keys_are_validated():
    from vidprior.engine.config import ConfigError, load_config

    base = ["task=pretrain", "data.train=x", "data.format=imagefolder"]
    cfg = load_config(None, [*base, "init.source=video", "init.checkpoint=v", "init.tap=-1", "train.trainable=[a.*]"])
    assert (cfg.init.tap, cfg.train.trainable, cfg.data.frames_per_video) == (-1, ["a.*"], 1)
    assert load_config(None, base).train.trainable is None  # default: everything trains
    video = ["init.source=video", "init.checkpoint=v"]
    bad = [  # (the key the error starts with, overrides)
        ("init.tap=1", ["task=finetune", "data.train=x", *video, "init.tap=1"]),  # pretrain only
        ("init.tap=-1", [*base, "init.source=image", "init.checkpoint=w", "init.tap=-1"]),  # inflated: no slices
        ("init.tap=1", [*base, *video, "model.sts=true", "init.tap=1"]),  # STS taps are not all temporal
        ("init.tap=0.5", [*base, "init.tap=0.5"]),
        ("data.frames_per_video=0", [*base, "data.format=list", "data.frames_per_video=0"]),
        ("data.frames_per_video=2", [*base, "data.frames_per_video=2"]),  # an image format
        ("data.frames_per_video=2", ["task=finetune", "data.train=x", "data.frames_per_video=2"]),
        ("train.trainable=[]", [*base, "train.trainable=[]"]),
        ("train.trainable='cls_head.*'", [*base, "train.trainable=cls_head.*"]),  # a list is required
    ]
    for key, overrides in bad:
        with pytest.raises(ConfigError, match="^" + re.escape(key)):
            load_config(None, overrides)
    for fmt in ("list", "ssv2", "rawframes"):
        assert load_config(None, [*base, f"data.format={fmt}", "data.frames_per_video=4"]).data.frames_per_video == 4


def test_resume_accepts_a_config_saved_before_the_new_keys():
    from vidprior.engine.config import RunCfg, to_dict
    from vidprior.engine.train_state import config_differences

    old = to_dict(RunCfg())
    del old["init"]["tap"], old["train"]["trainable"], old["data"]["frames_per_video"]
    assert config_differences(old, to_dict(RunCfg())) == []
    changed = RunCfg()
    changed.init.tap = 1
    assert config_differences(old, to_dict(changed)) == ["init.tap"]


def test_recipes():
    from vidprior.engine.config import load_config

    root = Path(__file__).parents[1] / "configs"
    probe = load_config(root / "probe" / "linear_probe_imagenet.yaml")
    assert (probe.task, probe.init.source, probe.train.trainable, probe.optim.epochs) == (
        "pretrain",
        "video",
        ["cls_head.fc_cls.*"],
        100,
    )
    assert probe.model.num_classes == 1000 and probe.train.mixup == 0 and probe.data.randaugment is None
    frames = load_config(root / "pretrain" / "k400_frames.yaml")
    assert (frames.task, frames.data.format, frames.model.name) == ("pretrain", "list", "resnet50_3x3x3")
    # the budget of Table 8: as many images as 100 ImageNet epochs (128M) from ~240k K400 videos
    budget = frames.optim.epochs * 240_000 * frames.data.frames_per_video
    assert abs(budget - 128e6) / 128e6 < 0.01


# ------------------------------------------------------------------------------------------------ end to end
CLASSES = 3
COMMON = [
    "model.name=slowonly_tiny",
    f"model.num_classes={CLASSES}",
    "model.dropout=0.0",
    "data.crop_size=32",
    "data.short_side=null",
    "data.randaugment=null",
    "data.workers=0",
    "train.ckpt_every_minutes=null",
    "optim.warmup_epochs=0",
    "optim.lr=0.05",
    "optim.epochs=2",
]


run = run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_data")
    for split, per_class in (("train", 8), ("val", 2)):
        for c in range(CLASSES):
            (root / "images" / split / f"class{c}").mkdir(parents=True)
            for k in range(per_class):
                write_color_image(root / "images" / split / f"class{c}" / f"{k}.png", c, seed=k + 50 * (split == "val"))
    (root / "videos").mkdir()
    for split, per_class in (("train", 2), ("val", 1)):
        rows = []
        for c in range(CLASSES):
            for k in range(per_class):
                name = f"{split}_{c}_{k}.mp4"
                write_color_video(root / "videos" / name, c, seed=c * 10 + k + 500 * (split == "val"))
                rows.append(f"{name} {c}")
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    # a 3D model "trained from scratch on video": random 3D kernels (side slices differ from the centre),
    # non-trivial BN statistics, and a 5-class head that the probe replaces
    video = randomize(create_model("slowonly_tiny", num_classes=5), seed=7)
    with torch.no_grad():
        video.backbone.conv1.bn.num_batches_tracked.fill_(123)
    save_file({k: v.contiguous() for k, v in video.state_dict().items()}, str(root / "video.safetensors"))
    return root


def _probe_args(data: Path, out: Path, tap: int = -1) -> list[str]:
    return [
        *COMMON,
        "data.format=imagefolder",
        f"data.train={data / 'images' / 'train'}",
        f"data.val={data / 'images' / 'val'}",
        "init.source=video",
        f"init.checkpoint={data / 'video.safetensors'}",
        f"init.tap={tap}",
        "train.trainable=[cls_head.*]",
        # timm's image augmentation draws from the process-global Python / NumPy RNGs (seeded per rank), so a
        # 2-process run crops and flips differently from a 1-process one; full-image crops without flips make the
        # inputs the same and the comparison of the two runs below exact
        "data.scale=[1.0,1.0]",
        "data.hflip=false",
        "train.batch_size=12",  # 24 images: 2 steps per epoch
        "train.ema_decay=0.9",
        "train.precise_bn_batches=1",  # must leave the frozen statistics alone
        "train.ckpt_every_steps=1",
        "train.keep_last=10",
        f"out={out}",
    ]


def _checkpoints(out: Path) -> dict[int, dict]:
    from vidprior.engine.checkpoint import load_checkpoint

    return {int(p.name.split("_")[1]): load_checkpoint(p) for p in sorted((out / "checkpoints").glob("step_*"))}


def _expected_backbone(video: dict[str, torch.Tensor], tap: int) -> dict[str, torch.Tensor]:
    """The image view's backbone state built by hand from the video checkpoint: slice ``tap`` of each 3D kernel."""
    model = create_model("slowonly_tiny", num_classes=5)
    convs = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    out = {}
    for k, v in video.items():
        if k.startswith("cls_head."):
            continue
        if k in convs:
            kt, pt = convs[k].kernel_size[0], convs[k].padding[0]
            out[k] = v[:, :, 0 if kt == 1 else pt + tap]
        else:
            out[k] = v
    return out


def test_linear_probe_of_a_temporal_slice_trains_only_the_head(data, tmp_path):
    out = tmp_path / "probe"
    res = run("pretrain", *_probe_args(data, out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "images seen" in res.stdout and "device-hours" in res.stdout  # the summary as before
    video = load_file(str(data / "video.safetensors"))
    expected = _expected_backbone(video, tap=-1)
    t1 = "backbone.layer3.0.conv1.conv.weight"  # a 3x1x1 conv: t1 is its slice 0, not the centre
    assert video[t1].shape[2] == 3 and not torch.equal(expected[t1], video[t1][:, :, 1])
    ckpts = _checkpoints(out)
    assert sorted(ckpts) == [1, 2, 3, 4]
    final, first = ckpts[4], ckpts[1]
    best = load_file(str(out / "best.safetensors"))
    ema = {k.removeprefix("module."): v for k, v in final["ema"].items()}
    for state in (final["model"], first["model"], ema, best):
        for k, v in expected.items():  # backbone frozen: the chosen slice, BN statistics and counters unchanged
            assert torch.equal(state[k], v), k
    assert final["model"]["backbone.conv1.bn.num_batches_tracked"] == 123
    head = ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]
    assert final["model"][head[0]].shape == (CLASSES, video["cls_head.fc_cls.weight"].shape[1])  # a new head
    for k in head:
        assert not torch.equal(final["model"][k], first["model"][k]), k  # the head trains
    # only the head is in the optimizer, and it has momentum
    opt_state = final["optimizer"]["state"]
    assert len(opt_state) == 2 and all(s["momentum_buffer"].abs().sum() > 0 for s in opt_state.values())
    assert final["config"]["train"]["trainable"] == ["cls_head.*"] and final["config"]["init"]["tap"] == -1

    # resume: stopped after step 3 (mid-epoch), resumed, ends bit for bit where the uninterrupted run ended
    cut = tmp_path / "cut"
    res = run("pretrain", *_probe_args(data, cut), "train.max_steps=3")
    assert res.returncode == 0, res.stderr[-3000:]
    res = run("pretrain", *_probe_args(data, cut), "--resume", "auto")
    assert res.returncode == 0, res.stderr[-3000:]
    resumed = _checkpoints(cut)[4]
    for key in ("model", "ema"):
        for k, v in final[key].items():
            assert torch.equal(resumed[key][k], v), (key, k)

    # two gloo processes (DDP with frozen parameters) match one process
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("needs torchrun")
    two = tmp_path / "two"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "-m",
            "vidprior",
            "pretrain",
            *_probe_args(data, two),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = _checkpoints(two)[4]
    assert ddp["world_size"] == 2
    for k, v in final["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5)


def test_probe_errors_name_the_pattern_or_the_conv(data, tmp_path):
    res = run("pretrain", *_probe_args(data, tmp_path / "a"), "train.trainable=[cls_heed.*]")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "'cls_heed.*'" in res.stderr and "cls_head.fc_cls.weight" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "a" / "checkpoints").exists()
    res = run("pretrain", *_probe_args(data, tmp_path / "b", tap=2))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "tap=2" in res.stderr and "backbone.layer3.0.conv1.conv" in res.stderr


def test_pretrain_on_video_frames_then_finetune_from_it(data, tmp_path):
    out = tmp_path / "frames"
    videos, k, batch, epochs = CLASSES * 2, 3, 4, 2
    res = run(
        "pretrain",
        *COMMON,
        "data.format=list",
        f"data.train={data / 'train.txt'}",
        f"data.val={data / 'val.txt'}",
        f"data.root={data / 'videos'}",
        f"data.frames_per_video={k}",
        f"train.batch_size={batch}",
        f"optim.epochs={epochs}",
        f"out={out}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    # one epoch = every video frames_per_video times; the trainer drops the last incomplete batch (drop_last)
    assert videos * k % batch != 0  # so that the test tells floor from ceil
    assert len(train) == epochs * ((videos * k) // batch) == epochs * math.floor(videos * k / batch)
    assert train[-1]["images_seen"] == len(train) * batch
    val = [r for r in rows if r["kind"] == "val"]
    assert [r["epoch"] for r in val] == [1, 2] and all("top1" in r for r in val)
    weights = out / "best.safetensors"
    image_sd = load_file(str(weights))
    assert image_sd["backbone.layer3.0.conv1.conv.weight"].dim() == 4  # a 2D counterpart's checkpoint

    from vidprior.engine.assembly import build_model
    from vidprior.engine.config import load_config

    cfg = load_config(
        None,
        [
            *COMMON,
            "task=finetune",
            "data.short_side=32",
            f"data.train={data / 'train.txt'}",
            f"data.root={data / 'videos'}",
            "init.source=image",
            f"init.checkpoint={weights}",
        ],
    )
    w3 = build_model(cfg).state_dict()["backbone.layer3.0.conv1.conv.weight"]
    assert torch.equal(w3[:, :, 1], image_sd["backbone.layer3.0.conv1.conv.weight"])  # inflated: centre slice


def test_video_frames_dataset_on_raw_frames(tmp_path):
    import numpy as np
    from PIL import Image

    from vidprior.data.datasets import VideoFramesDataset
    from vidprior.data.lists import read_rawframe_list

    folder = tmp_path / "frames" / "v0"
    folder.mkdir(parents=True)
    n = 8
    for i in range(n):  # frame i is uniformly grey 20 * i
        Image.fromarray(np.full((6, 6, 3), 20 * i, np.uint8)).save(folder / f"img_{i + 1:05d}.png")
    (tmp_path / "raw.txt").write_text(f"v0 {n} 2\nmissing 5 1\n")
    records = read_rawframe_list(tmp_path / "raw.txt", root=tmp_path / "frames")
    ds = VideoFramesDataset(records, frames_per_video=2, train=False, template="img_{:05d}.png", max_bad_fraction=1)
    assert len(ds) == 4
    for i, expected in ((0, 2), (1, 6)):  # centres of frames 0-3 and 4-7
        s = ds[i]
        assert s["label"] == 2 and s["frame"] == expected and np.array(s["image"])[0, 0, 0] == 20 * expected
    train = VideoFramesDataset(records[:1], frames_per_video=2, train=True, template="img_{:05d}.png")
    for epoch in range(3):
        train.set_epoch(epoch)
        assert 0 <= train[0]["frame"] < 4 <= train[1]["frame"] < 8  # a random frame of each half
    ds[2]  # the missing folder is substituted and reported
    assert str(tmp_path / "frames" / "missing") in ds.skipped
