"""Model zoo: published sizes, STS placement, the model API, image views, registry errors.

Parametrized over ``vidprior.list_models()``, so every registered family is checked. Full-size models run only on
the meta device (counts) or on a one-frame 64x64 clip (image-view equivalence).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import vidprior
from tests._util import randomize
from vidprior import STSConv3d, create_model, image_model, inflate_state_dict, list_models, profile
from vidprior.errors import VidpriorError
from vidprior.models import count_sts_layers

GOLDEN = Path(__file__).parent / "golden"

# Exact parameter counts (a change must be deliberate), with the published value they must round to.
# Sources: paper Table 4 (174 classes, SS-V2 head) and authors' configs (the authors' exact counts);
# 400 classes: PyTorchVideo / PySlowFast model zoo (Slow R50 32.45M, SlowFast R50 4x16 34.48M, 8x8 34.57M),
# mmaction2 (ir-CSN-50 13.13M).
EXPECTED_PARAMS = {
    ("slowonly50", 174): (31_991_022, 31.99),
    ("slowonly50", 400): (32_454_096, 32.45),
    ("resnet50_3x1x1", 400): (32_454_096, 32.45),
    ("resnet50_3x3x3", 400): (13_131_152, 13.13),
    ("csn50", 174): (12_668_078, 12.67),
    ("csn50", 400): (13_131_152, 13.13),
    ("slowfast50_4x16", 174): (33_958_358, 33.96),
    ("slowfast50_4x16", 400): (34_479_288, 34.48),
    ("slowfast50_8x8", 400): (34_565_560, 34.57),
    ("slowonly_tiny", 400): (793_504, None),
    ("csn_tiny", 400): (526_928, None),
    ("slowfast_tiny", 400): (918_370, None),
}

# Multiply-adds at T x 256 x 256 (one multiply-add = 1; conv, fc and batch norm), paper Table 4, and the conv+fc
# part as PySlowFast / PyTorchVideo publish it (docs/performance/).
EXPECTED_GMACS = {
    "slowonly50": ((1, 3, 8, 256, 256), 54.9, 54.52),
    "slowfast50_4x16": ((1, 3, 32, 256, 256), 36.4, 36.10),
    "slowfast50_8x8": ((1, 3, 32, 256, 256), None, 65.71),
    "csn50": ((1, 3, 8, 256, 256), 26.6, 26.24),
}

# STS layers the paper placed (docs/method.md) and how many of them have spatial stride 2.
EXPECTED_STS = {
    "slowonly50": (9, 0),
    "resnet50_3x1x1": (9, 0),
    "resnet50_3x3x3": (16, 3),
    "csn50": (16, 3),
    "slowfast50_4x16": (25, 0),
    "slowfast50_8x8": (25, 0),
}

TINY = [n for n in list_models() if n.endswith("_tiny")]


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def _clip_frames(model: nn.Module) -> int:
    return max(8, model.default_clip[0] if model.default_clip[0] <= 16 else 8)


# ------------------------------------------------------------------------------------------------ published sizes
@pytest.mark.parametrize("name,num_classes", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name, num_classes):
    if name not in list_models():
        pytest.skip(f"{name} not registered")
    exact, published = EXPECTED_PARAMS[(name, num_classes)]
    n = sum(p.numel() for p in _meta(name, num_classes=num_classes).parameters())
    assert n == exact
    if published is not None:
        assert round(n / 1e6, 2) == published


def test_paper_table4_rounding():
    """Paper Table 4 prints 32.0M, 34.0M, 12.7M at one decimal."""
    for name, published in [("slowonly50", 32.0), ("slowfast50_4x16", 34.0), ("csn50", 12.7)]:
        n = sum(p.numel() for p in _meta(name, num_classes=174).parameters())
        assert round(n / 1e6, 1) == published


@pytest.mark.parametrize("name", sorted(EXPECTED_GMACS))
def test_multiply_adds_match_published(name):
    shape, paper, conv_fc = EXPECTED_GMACS[name]
    p = profile(_meta(name, num_classes=174), shape)
    if paper is not None:
        assert abs(p.macs / 1e9 - paper) / paper < 0.01, p
    got = (p.macs_by_op["conv"] + p.macs_by_op["linear"]) / 1e9
    assert abs(got - conv_fc) / conv_fc < 0.002, p


@pytest.mark.parametrize("name", ["slowonly50", "csn50", "slowfast50_4x16"])
def test_golden_state_dict_keys(name):
    keys = sorted(_meta(name).state_dict())
    assert keys == (GOLDEN / f"{name}.txt").read_text().split()


# ------------------------------------------------------------------------------------------------ STS placement
@pytest.mark.parametrize("name", sorted(EXPECTED_STS))
def test_sts_placement_matches_the_paper(name):
    if name not in list_models():
        pytest.skip(f"{name} not registered")
    plain, sts = _meta(name), _meta(name, sts=True)
    count, strided = EXPECTED_STS[name]
    layers = [m for m in sts.modules() if isinstance(m, STSConv3d)]
    assert len(layers) == count == count_sts_layers(sts)
    assert sum(m.stride[1] == 2 for m in layers) == strided
    sd_p, sd_s = plain.state_dict(), sts.state_dict()
    assert [(k, v.shape) for k, v in sd_p.items()] == [(k, v.shape) for k, v in sd_s.items()]
    shape = (1, 3, 32 if "slowfast" in name else 8, 64, 64)
    assert profile(plain, shape).macs == profile(sts, shape).macs
    every = _meta(name, sts="all")
    assert count_sts_layers(every) >= count


@pytest.mark.parametrize("name", [n for n in list_models() if not n.endswith("_tiny")])
def test_every_model_has_sts_layers_and_options_pass_through(name):
    model = _meta(name, sts=True, static_ratio="1:2", static_mode="dilated", static_dilation=3)
    layers = [m for m in model.modules() if isinstance(m, STSConv3d)]
    assert layers and len(layers) == len(model.sts_layers)
    assert all(m.static_mode == "dilated" and m.static_dilation == 3 for m in layers)
    assert all(abs(m.static_ratio - 1 / 3) < 1e-9 for m in layers)


# ------------------------------------------------------------------------------------------------ model API
@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward_and_api(name):
    model = randomize(create_model(name, num_classes=7))
    t = _clip_frames(model)
    x = torch.randn(2, 3, t, 32, 32)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    feats = model.forward_features(x)
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.num_features)
    model.reset_classifier(0)
    assert model.num_classes == 0
    model.eval()
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.num_classes == 5


@pytest.mark.parametrize("name", TINY)
def test_tiny_sts_model_trains(name):
    model = create_model(name, num_classes=3, sts=True)
    assert count_sts_layers(model) > 0
    x = torch.randn(2, 3, _clip_frames(model), 32, 32)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------------------------ image views
@pytest.mark.parametrize("name", list_models())
def test_image_view_equals_one_frame_clip(name):
    """The 2D counterpart on an image computes what the 3D model computes on the one-frame clip (eval mode), and
    its checkpoint inflates back with every tensor accounted for."""
    torch.manual_seed(0)
    model = randomize(create_model(name, num_classes=10)).double().eval()
    view = image_model(model)  # keeps the model's (eval) mode
    assert not any(isinstance(m, (nn.Conv3d, nn.BatchNorm3d)) for m in view.modules())
    img = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model(img.unsqueeze(2))
        got = view(img)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
    # image checkpoint -> 3D model: every key maps (4-D kernels inflate, the rest copies)
    state, report = inflate_state_dict(view.state_dict(), model, mode="center")
    assert not report.skipped and len(state) == len(model.state_dict())
    fresh = create_model(name, num_classes=10).double().eval()
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(img.unsqueeze(2)), got, rtol=1e-7, atol=1e-9)


def test_image_view_keys_map_one_to_one():
    model = create_model("slowfast_tiny")
    view = image_model(model)
    assert list(view.state_dict()) == list(model.state_dict())
    assert any("lateral" in k for k in view.state_dict())  # the paper pre-trains both pathways and laterals
    w3, w2 = model.state_dict(), view.state_dict()
    assert w3["backbone.slow_path.layer3.0.conv1.conv.weight"].dim() == 5
    assert w2["backbone.slow_path.layer3.0.conv1.conv.weight"].dim() == 4


# ------------------------------------------------------------------------------------------------ registry errors
def test_registry_errors_are_clear():
    with pytest.raises(VidpriorError, match="did you mean 'slowonly50'"):
        create_model("slowonly_50")
    with pytest.raises(VidpriorError, match="unknown option 'widht'"):
        create_model("slowonly_tiny", widht=3)
    with pytest.raises(VidpriorError, match="sts='some'"):
        create_model("slowonly_tiny", sts="some")
    with pytest.raises(VidpriorError, match="sts=False"):
        create_model("slowonly_tiny", static_ratio=0.5)
    with pytest.raises(VidpriorError, match="num_classes"):
        create_model("slowonly_tiny", num_classes=-1)
    assert "slowonly50" in vidprior.list_models("slow*")
    assert set(vidprior.list_models("*tiny")) <= set(vidprior.list_models())


def test_width_and_depth_overrides():
    m = create_model("slowonly50", base_channels=8, stage_blocks=(1, 2, 1, 1), num_classes=3)
    assert len(m.backbone.layer2) == 2 and m.num_features == 8 * 8 * 4
    assert m(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)
