"""Model families as variant tables: every builder argument matters, no argument is silently dropped."""

from __future__ import annotations

import hashlib
import inspect

import pytest
import torch
from torch import nn

from vidprior.models import create_model, list_models
from vidprior.models._registry import get_builder
from vidprior.models.r2plus1d import R2PLUS1D_VARIANTS
from vidprior.models.resnet3d import RESNET3D_VARIANTS, ResNet3d
from vidprior.models.slowfast import SLOWFAST_VARIANTS, SlowPathway
from vidprior.models.x3d import X3D_VARIANTS, X3DHead

FULL = [n for n in list_models() if not n.endswith("_tiny")]
SMALL = {"base_channels": 8, "stage_blocks": (1, 1, 1, 1)}  # cheap baseline for every family
# a value different from the baseline for every builder argument; a new argument must be added here
CHANGED = {
    "dropout": 0.1,
    "base_channels": 16,
    "stage_blocks": (1, 2, 1, 1),
    "gamma_b": 3.0,
    "temporal_strides": (1, 1, 2, 1),
}


def _fingerprint(name: str, **kw) -> tuple:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **kw)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(f"{k}{tuple(v.shape)}".encode())
        h.update(v.float().numpy().tobytes())
    return repr(model), h.hexdigest()


def test_every_full_size_model_belongs_to_a_variant_table():
    tables = set(RESNET3D_VARIANTS) | set(X3D_VARIANTS) | set(SLOWFAST_VARIANTS) | set(R2PLUS1D_VARIANTS)
    assert set(FULL) == tables


@pytest.mark.parametrize("name", FULL)
def test_every_builder_argument_changes_the_model(name):
    params = inspect.signature(get_builder(name)).parameters
    base_kw = {k: v for k, v in SMALL.items() if k in params}
    base = _fingerprint(name, **base_kw)
    for arg, p in params.items():
        if arg == "num_classes":
            continue
        if isinstance(p.default, bool):
            value = not p.default
        else:
            assert arg in CHANGED, f"{name}: no test value for builder argument {arg!r}; add one to CHANGED"
            value = CHANGED[arg]
        try:
            changed = _fingerprint(name, **{**base_kw, arg: value})
        except (ValueError, TypeError):
            continue  # refused: fine
        assert changed != base, f"{name}: {arg}={value!r} builds the same model as the default (dropped?)"


@pytest.mark.parametrize("name", sorted(RESNET3D_VARIANTS))
def test_resnet_builder_defaults_are_the_variants(name):
    params = inspect.signature(get_builder(name)).parameters
    assert params["zero_init_residual"].default == RESNET3D_VARIANTS[name].zero_init_residual


def test_resnet50_3x1x1_honours_zero_init_residual():
    on = create_model("resnet50_3x1x1", zero_init_residual=True, **SMALL)
    off = create_model("resnet50_3x1x1", zero_init_residual=False, **SMALL)
    assert not on.backbone.layer1[0].conv3.bn.weight.any()
    assert off.backbone.layer1[0].conv3.bn.weight.all()


def test_resnet50_3x3x3_is_the_authors_csn50_at_8x8():
    a, b = create_model("resnet50_3x3x3", **SMALL), create_model("csn50", **SMALL)
    bns = [m for m in a.modules() if isinstance(m, nn.BatchNorm3d)]
    assert all(m.eps == 1e-3 for m in bns)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    assert a.backbone.layer1[0].conv3.bn.weight.all()  # no zero-init residual, as csn50
    assert (a.default_clip, b.default_clip) == ((8, 8), (32, 2))


def test_slowfast_laterals_live_in_the_slow_pathway_only():
    assert "lateral" not in inspect.signature(ResNet3d).parameters
    model = create_model("slowfast_tiny")
    assert isinstance(model.backbone.slow_path, SlowPathway)
    assert not any("lateral" in n for n, _ in model.backbone.fast_path.named_modules())
    assert {n for n, _ in model.backbone.slow_path.named_children() if "lateral" in n} == {
        "conv1_lateral",
        "layer1_lateral",
        "layer2_lateral",
        "layer3_lateral",
    }


def test_x3d_head_constructs_through_its_parent():
    head = X3DHead(32, 7, mid_features=16)
    assert head.classifier == "fc2" and head.fc_cls is head.fc2 and head.fc2.out_features == 7
    assert list(head.state_dict()) == ["fc1.weight", "fc2.weight", "fc2.bias"]
    head.reset(3)
    assert head.fc2.out_features == 3 and "fc_cls" not in dict(head.named_children())


def test_a_refused_builder_option_is_a_one_line_user_error_naming_model_and_value():
    """A builder's own value check (here the tiny members' width and strides) reaches the CLI as a VidpriorError that
    names the model and the option, not as a bare ValueError traceback."""
    from vidprior.errors import ModelOptionError, VidpriorError

    with pytest.raises(ModelOptionError, match=r"csn_tiny\(width=0\).*width") as info:
        create_model("csn_tiny", num_classes=4, width=0)
    assert isinstance(info.value, VidpriorError) and "model.overrides" in str(info.value)
    with pytest.raises(ModelOptionError, match=r"slowonly_tiny\(spatial_strides=\(1, 3, 1, 1\)\)"):
        create_model("slowonly_tiny", num_classes=4, spatial_strides=(1, 3, 1, 1))
