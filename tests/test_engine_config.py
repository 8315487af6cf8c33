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
