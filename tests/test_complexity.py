"""vidprior.profile: multiply-adds against analytic counts, meta vs real forward, STS parity, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models.video import r3d_18

from vidprior import STSConv3d, count_params, profile
from vidprior.errors import VidpriorError


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 8, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, stride=(2, 1, 1), padding=1, groups=4),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, 16, 1),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _conv_out(size, kernel, stride, padding, dilation=(1, 1, 1)):
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in zip(size, kernel, stride, padding, dilation)
    )


def _analytic(model: nn.Sequential, shape) -> dict[str, int]:
    """Walk the Sequential by hand, propagating shapes with the convolution arithmetic formula."""
    b, c, *size = shape
    conv = linear = norm = 0
    for m in model:
        if isinstance(m, nn.Conv3d):
            size = _conv_out(size, m.kernel_size, m.stride, m.padding, m.dilation)
            c = m.out_channels
            conv += b * m.out_channels * (m.in_channels // m.groups) * math.prod(m.kernel_size) * math.prod(size)
        elif isinstance(m, nn.BatchNorm3d):
            norm += 2 * b * c * math.prod(size)
        elif isinstance(m, nn.AdaptiveAvgPool3d):
            size = (1, 1, 1)
        elif isinstance(m, nn.Linear):
            linear += b * m.in_features * m.out_features
    return {"conv": conv, "linear": linear, "norm": norm}


@pytest.mark.parametrize("shape", [(1, 3, 4, 16, 16), (2, 3, 5, 15, 17)])
def test_small_model_matches_analytic_count(shape):
    model = _small_model()
    p = profile(model, shape)
    expected = _analytic(model, shape)
    assert p.macs_by_op["conv"] == expected["conv"]
    assert p.macs_by_op["linear"] == expected["linear"]
    assert p.macs_by_op["norm"] == expected["norm"]
    assert p.macs == sum(p.macs_by_op.values())
    assert p.macs == sum(expected.values()) + p.macs_by_op.get("other", 0)
    assert p.params == sum(t.numel() for t in model.parameters())
    assert p.params == count_params(model)
    assert p.input_shape == shape
    assert p.gmacs == p.macs / 1e9
    assert p.mparams == p.params / 1e6
    assert "GMACs" in str(p)


def test_norm_output_counted_from_real_output_shape():
    """'norm' = 2 x numel of every BN output, taken from the real forward with hooks."""
    model = _small_model().eval()
    shape = (2, 3, 4, 12, 12)
    numels = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: numels.append(out.numel()))
        for m in model
        if isinstance(m, nn.BatchNorm3d)
    ]
    with torch.no_grad():
        model(torch.randn(shape))
    for h in hooks:
        h.remove()
    assert len(numels) == 2
    assert profile(model, shape).macs_by_op["norm"] == 2 * sum(numels)


def test_count_norm_false_leaves_norm_out():
    model = _small_model()
    shape = (1, 3, 4, 16, 16)
    with_norm, without = profile(model, shape), profile(model, shape, count_norm=False)
    assert without.macs_by_op.get("norm", 0) == 0
    assert without.macs_by_op["conv"] == with_norm.macs_by_op["conv"]
    assert without.macs == with_norm.macs - with_norm.macs_by_op["norm"]


@pytest.mark.parametrize("training", [True, False])
def test_meta_count_equals_real_forward_and_leaves_model_alone(training):
    model = _small_model().train(training)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    shape = (2, 3, 4, 16, 16)
    meta = profile(model, shape)
    assert model.training is training
    real = profile(model, shape, device=None)
    assert model.training is training
    assert meta == real
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu", key
        assert torch.equal(value, state[key]), key  # BN running statistics included: counted in eval mode
    for name, p in model.named_parameters():
        assert p.device.type == "cpu", name
        assert p.requires_grad, name
    assert all(m.training is training for m in model.modules())


def test_profile_follows_parameter_dtype():
    model = _small_model().to(torch.float64)
    shape = (1, 3, 4, 16, 16)
    assert profile(model, shape) == profile(model, shape, device=None)
    assert next(model.parameters()).dtype == torch.float64


def test_shared_parameters_count_once():
    """A module used twice (tied weights): parameters count once, multiply-adds twice, on both counting paths."""
    lin = nn.Linear(6, 6)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    real = profile(model, (3, 6), device=None)
    assert real.params == 6 * 6 + 6
    assert real.macs_by_op["linear"] == 2 * 3 * 6 * 6
    assert profile(model, (3, 6)) == real  # default meta-device counting


# ------------------------------------------------------------------------------------------------ STS parity
STS_CASES = [
    # (C_in, C_out, kernel, groups, stride)
    (8, 12, (3, 1, 1), 1, (1, 1, 1)),
    (8, 12, (3, 1, 1), 1, (1, 2, 2)),
    (8, 12, (3, 1, 1), 1, (2, 2, 2)),
    (8, 8, (3, 3, 3), 8, (1, 1, 1)),
    (8, 8, (3, 3, 3), 8, (1, 2, 2)),
    (8, 8, (3, 3, 3), 8, (2, 2, 2)),
    (6, 6, (3, 5, 5), 6, (1, 2, 2)),
]
STS_IDS = ["311-s1", "311-s122", "311-s2", "dw333-s1", "dw333-s122", "dw333-s2", "dw355-s122"]


def _conv(cin, cout, kernel, groups, stride):
    k = kernel[1]
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=(1, k // 2, k // 2), groups=groups, bias=True)


@pytest.mark.parametrize("mode", ["cross", "dilated"])
@pytest.mark.parametrize(("cin", "cout", "kernel", "groups", "stride"), STS_CASES, ids=STS_IDS)
def test_sts_counts_same_macs_as_conv3d(cin, cout, kernel, groups, stride, mode):
    conv = _conv(cin, cout, kernel, groups, stride)
    sts = STSConv3d.from_conv3d(conv, static_mode=mode)
    shape = (2, cin, 6, 10, 12)
    out = _conv_out(shape[2:], kernel, stride, conv.padding)
    per_output = 3 * math.prod(kernel[1:]) * (cin // groups)
    if groups == cin:  # depthwise (3, k, k): 3 * k * k per output element
        assert per_output == 3 * kernel[1] * kernel[2]
    else:  # (3, 1, 1): 3 * C_in / groups per output element
        assert per_output == 3 * cin // groups
    analytic = shape[0] * cout * math.prod(out) * per_output
    p_conv, p_sts = profile(conv, shape), profile(sts, shape)
    assert p_conv.macs_by_op["conv"] == analytic
    assert p_sts.macs_by_op["conv"] == analytic
    assert p_sts.macs_by_op.get("linear", 0) == 0
    assert p_sts.params == p_conv.params
    # meta and real forward agree for STS too
    assert profile(sts, shape, device=None).macs_by_op["conv"] == analytic


@pytest.mark.parametrize(("cin", "cout", "kernel", "groups", "stride"), STS_CASES, ids=STS_IDS)
def test_sts_center_mode_counts_fewer(cin, cout, kernel, groups, stride):
    conv = _conv(cin, cout, kernel, groups, stride)
    sts = STSConv3d.from_conv3d(conv, static_mode="center")
    shape = (1, cin, 6, 10, 12)
    full = profile(conv, shape).macs_by_op["conv"]
    center = profile(sts, shape).macs_by_op["conv"]
    # the static half keeps only the centre slice: one third of its taps
    n_static = sts.num_static
    out = _conv_out(shape[2:], kernel, stride, conv.padding)
    static_saving = shape[0] * n_static * math.prod(out) * 2 * math.prod(kernel[1:]) * (cin // groups)
    assert 0 < n_static < cout
    assert center < full
    assert center == full - static_saving


# --------------------------------------------------------------------------------------------- torchvision
def test_r3d18_conv_and_linear_match_hook_count():
    torch.manual_seed(0)
    model = r3d_18(weights=None)
    shape = (1, 3, 16, 112, 112)
    p = profile(model, shape)

    # independent count: run a meta copy of the model and record every Conv3d / Linear output shape
    with torch.device("meta"):
        meta_model = r3d_18(weights=None)
    conv = linear = norm = 0
    calls = 0

    def hook(mod, inp, out):
        nonlocal conv, linear, norm, calls
        calls += 1
        if isinstance(mod, nn.Conv3d):
            per_output = (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
            conv += out.numel() * per_output
        elif isinstance(mod, nn.Linear):
            linear += out.numel() * mod.in_features
        else:
            norm += 2 * out.numel()

    kinds = (nn.Conv3d, nn.Linear, nn.BatchNorm3d)
    handles = [m.register_forward_hook(hook) for m in meta_model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        meta_model(torch.empty(shape, device="meta"))
    for h in handles:
        h.remove()
    assert calls == len(handles)
    assert conv > 0
    assert p.macs_by_op["conv"] == conv
    assert p.macs_by_op["linear"] == linear
    assert p.macs_by_op["norm"] == norm
    assert p.params == sum(t.numel() for t in model.parameters())
    assert all(t.device.type == "cpu" for t in model.parameters())


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "shape",
    [(), (1, 3, -4, 16, 16), (1, 3, 0, 16, 16), (1, 3, 4.0, 16, 16), [], (-1,)],
    ids=["empty", "negative", "zero", "float", "empty-list", "neg-1d"],
)
def test_bad_input_shape_raises(shape):
    with pytest.raises(VidpriorError, match="input_shape"):
        profile(_small_model(), shape)
