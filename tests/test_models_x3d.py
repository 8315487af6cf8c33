"""X3D family: published sizes, the mmaction2 architecture and names, STS placement, model API, image view.

Full-size models are built only on the meta device (counts, names); real forwards use ``x3d_tiny``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import vidprior.models.x3d  # noqa: F401  registers the X3D builders
from tests._util import randomize
from vidprior import STSConv3d, count_params, create_model, image_model, inflate_state_dict, profile
from vidprior.models import count_sts_layers
from vidprior.models.checkpoints import load_official
from vidprior.models.x3d import BlockX3d, round_repeats, round_width

GOLDEN = Path(__file__).parent / "golden"

# Exact parameter counts (a change must be deliberate) and the published value they round to: authors' configs
# (the authors' X3D-S with a 174-way SS-V2 head: 3.33M, paper Table 4: 3.3M); 400 classes: PySlowFast /
# PyTorchVideo model zoo (X3D-XS/S/M 3.79M, X3D-L 6.15M).
EXPECTED_PARAMS = {
    ("x3d_s", 174): (3_331_248, 3.33),
    ("x3d_xs", 400): (3_794_322, 3.79),
    ("x3d_s", 400): (3_794_322, 3.79),
    ("x3d_m", 400): (3_794_322, 3.79),
    ("x3d_l", 400): (6_153_432, 6.15),
    ("x3d_tiny", 400): (1_161_256, None),
}


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


# ------------------------------------------------------------------------------------------------ published sizes
@pytest.mark.parametrize("name,num_classes", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name, num_classes):
    exact, published = EXPECTED_PARAMS[(name, num_classes)]
    n = count_params(_meta(name, num_classes=num_classes))
    assert n == exact
    if published is not None:
        assert round(n / 1e6, 2) == published


def test_x3d_s_matches_paper_table4():
    """Paper Table 4: X3D-S 3.3M parameters, 3.2 GMACs at 8 x 256 x 256 (conv + fc 3.09 G, with BN 3.20 G)."""
    p = profile(_meta("x3d_s", num_classes=174), (1, 3, 8, 256, 256))
    assert round(p.params / 1e6, 1) == 3.3
    assert abs(p.macs / 1e9 - 3.2) / 3.2 < 0.01, p
    conv_fc = (p.macs_by_op["conv"] + p.macs_by_op["linear"]) / 1e9
    assert abs(conv_fc - 3.09) / 3.09 < 0.002, p
    assert p.macs == p.macs_by_op["conv"] + p.macs_by_op["linear"] + p.macs_by_op["norm"]


# ------------------------------------------------------------------------------------------------ architecture
def test_rounding_rules():
    assert [round_repeats(n, 2.2) for n in (1, 2, 5, 3)] == [3, 5, 11, 7]
    assert [round_repeats(n, 5.0) for n in (1, 2, 5, 3)] == [5, 10, 25, 15]
    assert round_width(24, 1.0) == 24 and round_width(24, 2.0) == 48
    # squeeze-excitation widths of X3D-S: 54, 108, 216, 432 channels / 16 -> 8, 8, 16, 32 (the 90% rule: 27 -> 32)
    assert [round_width(c, 1 / 16) for c in (54, 108, 216, 432)] == [8, 8, 16, 32]


@pytest.mark.parametrize("name,blocks", [("x3d_xs", 3), ("x3d_s", 3), ("x3d_m", 3), ("x3d_l", 5)])
def test_architecture(name, blocks):
    model = _meta(name)
    bb = model.backbone
    depth = [3, 5, 11, 7] if blocks == 3 else [5, 10, 25, 15]
    assert [len(getattr(bb, n)) for n in bb.res_layers] == depth
    # stem: 1x3x3 s(1,2,2) without BN / activation, then depthwise 5x1x1 with BN + ReLU
    assert bb.conv1_s.bn is None and bb.conv1_s.activate is None
    assert tuple(bb.conv1_s.conv.kernel_size) == (1, 3, 3) and tuple(bb.conv1_s.conv.stride) == (1, 2, 2)
    assert tuple(bb.conv1_t.conv.kernel_size) == (5, 1, 1) and bb.conv1_t.conv.groups == 24
    assert isinstance(bb.conv1_t.activate, nn.ReLU)
    se_widths = set()
    for i, layer in enumerate(bb.res_layers):
        width, inner = 24 * 2**i, int(2.25 * 24 * 2**i)
        for j, block in enumerate(getattr(bb, layer)):
            assert isinstance(block, BlockX3d)
            assert block.conv1.conv.out_channels == inner and block.conv3.conv.out_channels == width
            conv2 = block.conv2.conv
            assert tuple(conv2.kernel_size) == (3, 3, 3) and conv2.groups == inner
            assert tuple(conv2.stride) == ((1, 2, 2) if j == 0 else (1, 1, 1))
            assert block.conv2.activate is None and block.conv3.activate is None
            assert (block.downsample is not None) == (j == 0)
            assert (block.se_module is not None) == (j % 2 == 0)
            if block.se_module is not None:
                se_widths.add((i, block.se_module.bottleneck))
    assert sorted(se_widths) == [(0, 8), (1, 8), (2, 16), (3, 32)]
    assert bb.conv5.conv.in_channels == 192 and bb.conv5.conv.out_channels == 432
    assert model.num_features == 2048
    assert model.default_clip == {"x3d_xs": (4, 12), "x3d_s": (13, 6), "x3d_m": (16, 5), "x3d_l": (16, 5)}[name]


def test_head_names_and_init():
    model = create_model("x3d_tiny", num_classes=5)
    sd = model.state_dict()
    head = sorted(k for k in sd if k.startswith("cls_head."))
    assert head == ["cls_head.fc1.weight", "cls_head.fc2.bias", "cls_head.fc2.weight"]  # mmaction2 X3DHead
    assert sd["cls_head.fc1.weight"].shape == (2048, 144) and sd["cls_head.fc2.weight"].shape == (5, 2048)
    # zero_init_residual (mmaction2 X3D default): the last BN of every block starts at 0
    blocks = [m for m in model.modules() if isinstance(m, BlockX3d)]
    assert all(torch.all(b.conv3.bn.weight == 0) for b in blocks)
    assert all(torch.all(b.conv1.bn.weight == 1) for b in blocks)


def test_builder_overrides():
    model = _meta("x3d_s", stage_blocks=(1, 2, 1, 1), gamma_b=2.0, base_channels=16, num_classes=3)
    bb = model.backbone
    assert [len(getattr(bb, n)) for n in bb.res_layers] == [1, 2, 1, 1]
    assert bb.layer1[0].conv1.conv.out_channels == 32 and bb.conv5.conv.out_channels == 256
    assert len(model.sts_layers) == 5


def test_golden_state_dict_keys():
    """Key names follow mmaction2 0.x X3D / X3DHead (so the authors' checkpoints load strictly)."""
    keys = sorted(_meta("x3d_s").state_dict())
    assert keys == (GOLDEN / "x3d_s.txt").read_text().split()


def test_authors_pretraining_checkpoint_loads():
    """The authors' timm pre-training checkpoint (``get_feature.*``, ``fc1.*`` with a bias, 1000-way
    ``classifier``) loads: backbone and fc1.weight copied, fc1.bias and the classifier skipped (docs/method.md)."""
    model = create_model("x3d_tiny", num_classes=10)
    state = {
        "get_feature." + k[len("backbone.") :]: torch.randn(v.shape) if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("backbone.")
    }
    state["fc1.weight"] = torch.randn(2048, 144)
    state["fc1.bias"] = torch.randn(2048)
    state["classifier.weight"], state["classifier.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    report = load_official(model, state)
    assert set(report.skipped) >= {"cls_head.fc1.bias", "cls_head.fc2.weight", "cls_head.fc2.bias"}
    assert "cls_head.fc1.weight" in report.copied
    assert torch.equal(model.cls_head.fc1.weight, state["fc1.weight"])
    assert torch.equal(model.backbone.layer2[0].conv2.conv.weight, state["get_feature.layer2.0.conv2.conv.weight"])


# ------------------------------------------------------------------------------------------------ STS placement
def test_sts_placement_matches_the_paper():
    plain, sts = _meta("x3d_s", num_classes=174), _meta("x3d_s", num_classes=174, sts=True)
    layers = {n: m for n, m in sts.named_modules() if isinstance(m, STSConv3d)}
    assert len(layers) == 26 == count_sts_layers(sts) == len(sts.sts_layers)
    assert sorted(layers) == sorted(sts.sts_layers)
    assert all(n.endswith(".conv2.conv") for n in layers)
    assert sum(m.stride[1] == 2 for m in layers.values()) == 4
    sd_p, sd_s = plain.state_dict(), sts.state_dict()
    assert [(k, v.shape) for k, v in sd_p.items()] == [(k, v.shape) for k, v in sd_s.items()]
    shape = (1, 3, 8, 256, 256)
    p_plain, p_sts = profile(plain, shape), profile(sts, shape)
    assert p_plain.params == p_sts.params
    assert p_plain.macs_by_op == p_sts.macs_by_op


# ------------------------------------------------------------------------------------------------ model API
def test_tiny_forward_backward_and_api():
    model = randomize(create_model("x3d_tiny", num_classes=7))
    x = torch.randn(2, 3, 4, 32, 32)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad
    zero = [n for n, p in model.named_parameters() if not p.grad.any()]
    assert not zero
    assert model.num_features == 2048 and model.num_classes == 7
    feats = model.forward_features(x)
    assert feats.shape == (2, 144, 4, 1, 1)
    model.eval()
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pre.shape == (2, 2048) and (pre >= 0).all()  # fc1 -> ReLU
        torch.testing.assert_close(model.cls_head.fc2(pre), model(x))
        fc1 = model.cls_head.fc1.weight.clone()
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pre)
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.num_classes == 5
        assert torch.equal(model.cls_head.fc1.weight, fc1)  # reset replaces fc2 only


def test_tiny_sts_model_trains():
    model = create_model("x3d_tiny", num_classes=3, sts=True)
    assert count_sts_layers(model) == 4
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------------------------ image view
def test_image_view_equals_one_frame_clip():
    """The 2D counterpart on an image computes what the 3D model computes on the one-frame clip (eval mode), and
    its checkpoint inflates back with every tensor accounted for."""
    model = randomize(create_model("x3d_tiny", num_classes=10)).double().eval()
    view = image_model(model)
    assert not any(isinstance(m, (nn.Conv3d, nn.BatchNorm3d)) for m in view.modules())
    assert list(view.state_dict()) == list(model.state_dict())
    img = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model(img.unsqueeze(2))
        got = view(img)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
    state, report = inflate_state_dict(view.state_dict(), model, mode="center")
    assert not report.skipped and len(state) == len(model.state_dict())
    fresh = create_model("x3d_tiny", num_classes=10).double().eval()
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(img.unsqueeze(2)), got, rtol=1e-7, atol=1e-9)
    # the 5x1x1 stem conv and the 3x3x3 convs keep their centre temporal tap only
    assert state["backbone.conv1_t.conv.weight"][:, :, [0, 1, 3, 4]].abs().sum() == 0
    assert state["backbone.layer1.0.conv2.conv.weight"][:, :, [0, 2]].abs().sum() == 0
