"""Every recipe under configs/ loads, validates and names a registered model."""

from __future__ import annotations

from pathlib import Path

import pytest

import vidprior
from vidprior.engine.config import load_config

ROOT = Path(__file__).parents[1]
CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(p.parents[2])) for p in CONFIGS])
def test_recipe_is_valid(path):
    cfg = load_config(path)
    assert cfg.model.name in vidprior.list_models()
    assert cfg.task in ("pretrain", "finetune", "test")
    if cfg.model.sts:
        vidprior.create_model(
            cfg.model.name,
            sts=cfg.model.sts,
            static_ratio=cfg.model.static_ratio,
            static_mode=cfg.model.static_mode,
            static_dilation=cfg.model.static_dilation,
        )


def test_recipes_carry_the_papers_numbers():
    k400 = load_config(ROOT / "configs/finetune/k400/slowonly50.yaml")
    assert (k400.optim.lr, k400.train.batch_size, k400.optim.epochs, k400.optim.clip_grad) == (0.02, 128, 50, 40.0)
    ssv2 = load_config(ROOT / "configs/finetune/ssv2/csn50.yaml")
    assert (ssv2.optim.lr, ssv2.train.batch_size, ssv2.data.hflip, ssv2.data.geometry) == (0.1, 64, False, "seg8")
    a2 = load_config(ROOT / "configs/pretrain/a2_lamb_300ep.yaml")
    assert (a2.optim.name, a2.optim.lr, a2.train.loss, a2.train.repeated_aug) == ("lamb", 5e-3, "bce", 3)
    sgd = load_config(ROOT / "configs/pretrain/sgd_150ep.yaml")
    assert (sgd.optim.lr, sgd.optim.base_batch_size, sgd.optim.epochs) == (0.4, 1024, 150)
    x3d = load_config(ROOT / "configs/finetune/k400/x3d_s.yaml")
    assert (x3d.data.crop_size, x3d.data.geometry, x3d.optim.epochs) == (160, "13x6", 100)
