"""R(2+1)D family: the paper's R(2+1)D-34 (mmaction2 layout) and torchvision's R(2+1)D-18.

Full-size models are built only on the meta device (counts, key lists, MACs), except R(2+1)D-18, which runs once
on a 4 x 32 x 32 clip to compare with torchvision's implementation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import vidprior.models.r2plus1d  # registers the builders
from tests._util import randomize
from vidprior import STSConv3d, create_model, image_model, inflate_state_dict, list_models, profile
from vidprior.models import apply_sts, count_sts_layers
from vidprior.models.r2plus1d import Conv2plus1d, mid_channels

GOLDEN = Path(__file__).parent / "golden"

# Exact parameter counts. R(2+1)D-34: paper Table 4 prints 63.6M (SS-V2 head, 174 classes); authors' configs
# gives the authors' 63.64M (174) and 63.76M (400). R(2+1)D-18: torchvision's published 31,505,325 (400 classes).
R2P1D34_PARAMS = {174: 63_643_343, 400: 63_759_281}
R2P1D18_PARAMS = 31_505_325

# Multiply-adds at 1 x 3 x 8 x 256 x 256 (paper Table 4: 114.8 G; conv + fc alone 114.47 G, authors' configs).
PAPER_GMACS, CONV_FC_GMACS = 114.8, 114.47


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def test_registered_with_typed_keyword_only_builders():
    import inspect

    assert {"r2plus1d34", "r2plus1d18", "r2plus1d_tiny"} <= set(list_models("r2plus1d*"))
    for fn in (vidprior.models.r2plus1d.r2plus1d34, vidprior.models.r2plus1d.r2plus1d18):
        params = inspect.signature(fn).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        assert list(params) == ["num_classes", "dropout", "base_channels", "stage_blocks", "temporal_strides"]
    model = _meta("r2plus1d34")
    assert model.default_clip == (8, 8) and model.num_features == 512 and model.num_classes == 400


# ------------------------------------------------------------------------------------------------ published sizes
@pytest.mark.parametrize("num_classes", sorted(R2P1D34_PARAMS))
def test_r2plus1d34_parameter_count(num_classes):
    n = sum(p.numel() for p in _meta("r2plus1d34", num_classes=num_classes).parameters())
    assert n == R2P1D34_PARAMS[num_classes]
    assert round(n / 1e6, 2) == {174: 63.64, 400: 63.76}[num_classes]
    if num_classes == 174:
        assert round(n / 1e6, 1) == 63.6  # paper Table 4


def test_r2plus1d34_multiply_adds():
    p = profile(_meta("r2plus1d34", num_classes=174), (1, 3, 8, 256, 256))
    assert abs(p.macs / 1e9 - PAPER_GMACS) / PAPER_GMACS < 0.01, p
    conv_fc = (p.macs_by_op["conv"] + p.macs_by_op["linear"]) / 1e9
    assert abs(conv_fc - CONV_FC_GMACS) / CONV_FC_GMACS < 0.005, p
    # mmaction2's default temporal strides (1, 2, 2, 2) would roughly halve it (authors' configs: ~53 G); the
    # paper's number confirms that the authors did not stride in time.
    strided = profile(_meta("r2plus1d34", num_classes=174, temporal_strides=(1, 2, 2, 2)), (1, 3, 8, 256, 256))
    assert 45 < (strided.macs_by_op["conv"] + strided.macs_by_op["linear"]) / 1e9 < 60


def test_r2plus1d34_layout_matches_mmaction():
    bb = _meta("r2plus1d34").backbone
    stem = bb.conv1.conv
    assert isinstance(stem, Conv2plus1d) and stem.mid_channels == 83  # int(3*3*64*49 / (3*49 + 3*64))
    assert tuple(stem.conv_s.kernel_size) == (1, 7, 7) and tuple(stem.conv_s.stride) == (1, 2, 2)
    assert tuple(stem.conv_s.padding) == (0, 3, 3)
    assert tuple(stem.conv_t.kernel_size) == (3, 1, 1) and tuple(stem.conv_t.padding) == (1, 0, 0)
    assert isinstance(bb.maxpool, nn.MaxPool3d)
    b = bb.layer2[0]
    assert tuple(b.conv1.conv.conv_s.stride) == (1, 2, 2) and tuple(b.conv2.conv.conv_s.stride) == (1, 1, 1)
    assert b.conv1.conv.mid_channels == mid_channels(64, 128, 3) == 230
    assert b.conv2.conv.mid_channels == mid_channels(128, 128, 3) == 288
    ds = b.downsample.conv
    assert ds.mid_channels == 54 and tuple(ds.conv_t.kernel_size) == (1, 1, 1)  # int(3*64*128 / (64 + 3*128))
    assert bb.layer1[0].downsample is None and b.conv2.activate is None and b.downsample.activate is None
    assert all(c.stride[0] == 1 for c in bb.modules() if isinstance(c, nn.Conv3d))  # no temporal striding
    assert all(c.bias is None for c in bb.modules() if isinstance(c, nn.Conv3d))
    outer_bns = [m.bn for m in bb.modules() if hasattr(m, "bn") and isinstance(m.bn, nn.BatchNorm3d)]
    assert len(outer_bns) == 1 + 2 * 16 + 3 and all(bn.eps == 1e-3 for bn in outer_bns)
    # bn_s keeps BN3d's default eps: mmcv's ConvModule does not pass the config's norm_cfg (eps=1e-3) into the conv
    # layer it builds, and Conv2plus1d / the authors' Conv2plus1d_reshape default to norm_cfg=dict(type='BN3d').
    assert all(m.bn_s.eps == 1e-5 for m in bb.modules() if isinstance(m, Conv2plus1d))


def test_golden_state_dict_keys():
    """Names as mmaction2 0.x (ResNet2Plus1d + mmcv ConvModule + Conv2plus1d), so the authors' checkpoints load."""
    keys = sorted(_meta("r2plus1d34").state_dict())
    assert keys == (GOLDEN / "r2plus1d34.txt").read_text().split()
    for key in (
        "backbone.conv1.conv.conv_s.weight",
        "backbone.conv1.conv.bn_s.running_var",
        "backbone.conv1.conv.conv_t.weight",
        "backbone.conv1.bn.weight",
        "backbone.layer1.0.conv1.conv.conv_s.weight",
        "backbone.layer2.0.downsample.conv.conv_s.weight",
        "backbone.layer4.2.conv2.bn.running_mean",
        "cls_head.fc_cls.weight",
    ):
        assert key in keys


# ------------------------------------------------------------------------------------------------ STS placement
@pytest.mark.parametrize("name,count", [("r2plus1d34", 33), ("r2plus1d18", 17)])
def test_sts_placement(name, count):
    plain, sts = _meta(name, num_classes=174), _meta(name, num_classes=174, sts=True)
    layers = {n: m for n, m in sts.named_modules() if isinstance(m, STSConv3d)}
    assert len(layers) == count == count_sts_layers(sts) == len(sts.sts_layers)
    assert sorted(layers) == sorted(sts.sts_layers)
    assert all(n.endswith(".conv.conv_t") and "downsample" not in n for n in layers)
    assert "backbone.conv1.conv.conv_t" in layers
    assert all(tuple(m.kernel_size) == (3, 1, 1) for m in layers.values())
    sd_p, sd_s = plain.state_dict(), sts.state_dict()
    assert [(k, v.shape) for k, v in sd_p.items()] == [(k, v.shape) for k, v in sd_s.items()]
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in sts.parameters())
    shape = (1, 3, 8, 256, 256) if name == "r2plus1d34" else (1, 3, 8, 112, 112)
    assert profile(plain, shape).macs == profile(sts, shape).macs
    # "all" finds nothing more: the 1x1x1 projections and the spatial convs have no temporal extent
    report = apply_sts(_meta(name), "all")
    assert sorted(report.converted) == sorted(layers)
    assert all(why.startswith("kernel") for why in report.skipped.values())


def test_apply_sts_on_a_built_model_converts_exactly_the_paper_layers():
    model = _meta("r2plus1d34")
    report = apply_sts(model, True)
    assert report.converted == model.sts_layers and len(report.converted) == 33
    assert count_sts_layers(model) == 33


# ----------------------------------------------------------------------------------------------- torchvision R(2+1)D-18
def _torchvision_to_vidprior(key: str) -> str:
    """torchvision ``r2plus1d_18`` state-dict key -> vidprior ``r2plus1d18`` key."""
    rules = [
        (r"^stem\.0\.", "backbone.conv1.conv.conv_s."),
        (r"^stem\.1\.", "backbone.conv1.conv.bn_s."),
        (r"^stem\.3\.", "backbone.conv1.conv.conv_t."),
        (r"^stem\.4\.", "backbone.conv1.bn."),
        (r"^(layer\d\.\d+)\.(conv\d)\.0\.0\.", r"backbone.\1.\2.conv.conv_s."),
        (r"^(layer\d\.\d+)\.(conv\d)\.0\.1\.", r"backbone.\1.\2.conv.bn_s."),
        (r"^(layer\d\.\d+)\.(conv\d)\.0\.3\.", r"backbone.\1.\2.conv.conv_t."),
        (r"^(layer\d\.\d+)\.(conv\d)\.1\.", r"backbone.\1.\2.bn."),
        (r"^(layer\d\.\d+)\.downsample\.0\.", r"backbone.\1.downsample.conv."),
        (r"^(layer\d\.\d+)\.downsample\.1\.", r"backbone.\1.downsample.bn."),
        (r"^fc\.", "cls_head.fc_cls."),
    ]
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise KeyError(key)


def test_r2plus1d18_parameter_count():
    assert sum(p.numel() for p in _meta("r2plus1d18").parameters()) == R2P1D18_PARAMS


def test_r2plus1d18_equals_torchvision():
    tv_video = pytest.importorskip("torchvision.models.video")
    torch.manual_seed(0)
    ref = randomize(tv_video.r2plus1d_18(num_classes=400)).eval()
    assert sum(p.numel() for p in ref.parameters()) == R2P1D18_PARAMS
    mapped = {_torchvision_to_vidprior(k): v for k, v in ref.state_dict().items()}
    assert len(mapped) == len(ref.state_dict())
    model = _meta("r2plus1d18", num_classes=400)
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(mapped, strict=True, assign=True)
    model.eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected, got = ref(x), model(x)
        ref_feats = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.stem(x)))))
        feats = model.forward_features(x)
    assert got.shape == (1, 400) and feats.shape == ref_feats.shape == (1, 512, 1, 2, 2)  # T: 4 -> 1
    torch.testing.assert_close(feats, ref_feats)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------ tiny models
SMALL = {
    "r2plus1d_tiny": {},
    "r2plus1d18_small": {"base_channels": 16, "stage_blocks": (1, 1, 1, 1)},  # torchvision layout, quarter width
}


def _small(key: str, **kw) -> nn.Module:
    name = "r2plus1d18" if key == "r2plus1d18_small" else key
    return create_model(name, **SMALL[key], **kw)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_tiny_forward_backward_and_api(key):
    model = randomize(_small(key, num_classes=7))
    x = torch.randn(2, 3, 4, 32, 32)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert model.num_features == 128
    model.reset_classifier(0)
    model.eval()
    with torch.no_grad():
        feats = model(x)
    assert feats.shape == (2, model.num_features) and model.num_classes == 0


@pytest.mark.parametrize("key", sorted(SMALL))
def test_tiny_sts_model_trains(key):
    model = _small(key, num_classes=3, sts=True)
    assert count_sts_layers(model) == 9  # stem + 2 per block
    x = torch.randn(2, 3, 4, 32, 32)
    y = model(x)
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("key", sorted(SMALL))
def test_image_view_equals_one_frame_clip(key):
    """The 2D counterpart on an image computes what the 3D model computes on the one-frame clip (eval mode), and
    its state dict inflates back onto the 3D model with every key accounted for."""
    model = randomize(_small(key, num_classes=10)).double().eval()
    view = image_model(model)
    assert not any(isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)) for m in view.modules())
    img = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = model(img.unsqueeze(2))
        got = view(img)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
    state, report = inflate_state_dict(view.state_dict(), model)
    assert not report.skipped and set(state) == set(model.state_dict())
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in model.state_dict().items()}
    fresh = _small(key, num_classes=10).double().eval()
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(img.unsqueeze(2)), got, rtol=1e-7, atol=1e-9)
