"""Configuration: YAML + overrides, strict keys with the nearest valid key, types, impossible values."""

from __future__ import annotations

import pytest

from vidprior.engine.config import ConfigError, RunCfg, check_paths, load_config, save_yaml, to_dict, validate


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.02\n  epochs: 50\nmodel:\n  name: slowonly50\n")
    (tmp_path / "run.yaml").write_text("_base_: base.yaml\ndata:\n  train: t.txt\noptim:\n  epochs: 10\n")
    cfg = load_config(tmp_path / "run.yaml", ["optim.lr=0.1", "model.sts=true", "data.short_side=[256, 320]"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.model.sts, cfg.data.short_side) == (0.1, 10, True, [256, 320])
    save_yaml(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["optim.lrr=0.1"], r"unknown key 'optim.lrr'; nearest valid key: 'optim.lr'"),
        (["modle.name=x"], r"unknown key 'modle'; nearest valid key: 'model'"),
        (["optim.lr=-0.1"], r"optim.lr=-0.1: must be > 0"),
        (["train.batch_size=abc"], r"train.batch_size='abc': expected an integer"),
        (["train.batch_size=0"], r"train.batch_size=0: must be >= 1"),
        (["model.static_mode=crosss"], r"did you mean 'cross'"),
        (["data.crop_size=300"], r"data.crop_size=300: larger than the short-side resize 256"),
        (["data.geometry=8by8"], r"data.geometry: clip geometry '8by8'"),
        (["optim.epochs=0"], r"optim.epochs=0: must be >= 1"),
        (["init.source=image"], r"init.checkpoint=None: required for init.source='image'"),
        (["data.train=null"], r"data.train=None: a training list / folder is required"),
        (["optim.lr"], r"expected key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, match):
    base = ["data.train=t.txt"] if not any(o.startswith("data.train") for o in overrides) else []
    with pytest.raises(ConfigError, match=match):
        load_config(None, base + overrides)


def test_batch_must_divide_by_world_size():
    cfg = load_config(None, ["data.train=t.txt", "train.batch_size=6"])
    validate(cfg, world_size=3)
    with pytest.raises(
        ConfigError, match=r"train.batch_size=6: the global batch must divide by the number of processes \(4\)"
    ):
        validate(cfg, world_size=4)


def test_missing_paths(tmp_path):
    cfg = load_config(None, [f"data.train={tmp_path / 'nope.txt'}"])
    with pytest.raises(ConfigError, match=r"data.train=.*nope.txt': no such file or folder"):
        check_paths(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    assert isinstance(load_config(None, ["data.train=t"]), RunCfg)


@pytest.mark.parametrize(
    "key,module_attr",
    [
        ("data.format", ("vidprior.data.formats", "FORMAT_NAMES")),
        ("data.backend", ("vidprior.data.backends", "BACKENDS")),
        ("model.static_mode", ("vidprior.layers.sts", "STATIC_MODES")),
        ("model.layout", ("vidprior.layers.sts", "LAYOUTS")),
    ],
)
def test_allowed_values_come_from_the_owning_module_and_errors_list_them(key, module_attr):
    import importlib

    owned = getattr(importlib.import_module(module_attr[0]), module_attr[1])
    from vidprior.engine.config import allowed_values

    assert tuple(allowed_values()[key]) == tuple(owned)
    with pytest.raises(ConfigError, match=r"expected one of") as e:
        load_config(None, ["data.train=t.txt", f"{key}=no_such_value"])
    assert all(repr(v) in str(e.value) for v in owned), str(e.value)
    for value in owned:  # every value the owner knows is accepted
        cfg = load_config(None, ["data.train=t.txt", f"{key}={value}"])
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value


def test_imagelist_is_an_explicit_image_format(tmp_path):
    from vidprior.data.formats import FORMATS, VIDEO_FORMATS
    from vidprior.engine.assembly import read_records

    assert not FORMATS["imagelist"].video and "imagelist" not in VIDEO_FORMATS
    assert set(VIDEO_FORMATS) == {"list", "ssv2", "rawframes"}
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "list.txt").write_text("a.png 1\nb.png 0\n")
    cfg = load_config(None, ["task=pretrain", "data.format=imagelist", f"data.train={tmp_path / 'list.txt'}",
                             f"data.root={tmp_path}"])  # fmt: skip
    records, names = read_records(cfg, "train")
    assert [(r.path, r.label) for r in records] == [(str(tmp_path / "a.png"), 1), (str(tmp_path / "b.png"), 0)]
    assert names is None
    with pytest.raises(ConfigError, match="frames_per_video"):  # a video-format-only key
        load_config(None, [*cfg_overrides(tmp_path), "data.frames_per_video=2"])


def cfg_overrides(tmp_path):
    return ["task=pretrain", "data.format=imagelist", f"data.train={tmp_path / 'list.txt'}"]


def test_flip_default_is_the_formats_and_ssv2_does_not_flip():
    from vidprior.data.formats import FORMATS

    assert {n: f.default_hflip() for n, f in FORMATS.items()} == {
        "list": True, "ssv2": False, "rawframes": True, "imagefolder": True, "imagelist": True,
    }  # fmt: skip


def test_a_video_task_on_an_image_format_says_so(tmp_path):
    from vidprior.engine.assembly import video_dataset

    (tmp_path / "list.txt").write_text("a.png 0\n")
    cfg = load_config(None, ["data.format=imagelist", f"data.train={tmp_path / 'list.txt'}"])
    with pytest.raises(ConfigError, match="holds images; task finetune needs a video format"):
        video_dataset(cfg, "train", train=True)


def test_every_sts_option_of_the_layer_is_a_model_key_and_reaches_the_model():
    from vidprior.engine.assembly import build_model
    from vidprior.layers.sts import STS_OPTIONS

    cfg = load_config(
        None,
        [
            "data.train=t.txt", "model.name=slowonly_tiny", "model.num_classes=3", "model.sts=true",
            "model.static_ratio=0.25", "model.static_mode=dilated", "model.static_dilation=3",
        ],
    )  # fmt: skip
    assert set(STS_OPTIONS) <= set(to_dict(cfg.model))
    model = build_model(cfg)
    from vidprior.layers.sts import STSConv3d

    layers = [m for m in model.modules() if isinstance(m, STSConv3d)]
    assert layers, "model.sts=true placed no STS layer"
    for name in STS_OPTIONS:  # each option as configured, not the layer's default
        assert {getattr(m, name) for m in layers} == {getattr(cfg.model, name)}, name
