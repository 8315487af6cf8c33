"""ConvModule: conv -> BN -> activation with mmcv's defaults, and the BN epsilon every model family is built with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidprior import create_model, list_models
from vidprior.layers.conv_module import ConvModule


def test_defaults_are_a_pointwise_conv_without_bias_then_bn_then_relu():
    m = ConvModule(4, 8)
    conv = m.conv
    assert isinstance(conv, nn.Conv3d)
    assert (conv.kernel_size, conv.stride, conv.padding, conv.groups) == ((1, 1, 1), (1, 1, 1), (0, 0, 0), 1)
    assert conv.bias is None  # a BN follows: a conv bias would only duplicate its shift
    assert isinstance(m.bn, nn.BatchNorm3d) and m.bn.num_features == 8
    assert m.bn.eps == 1e-5 == nn.BatchNorm3d(1).eps  # mmcv's and PyTorch's default (CSN and R(2+1)D pass 1e-3)
    assert isinstance(m.activate, nn.ReLU) and m.activate.inplace


def test_arguments_reach_the_conv():
    m = ConvModule(4, 6, (3, 1, 1), (1, 2, 2), (1, 0, 0), groups=2, bias=True)
    conv = m.conv
    assert (conv.kernel_size, conv.stride, conv.padding, conv.groups) == ((3, 1, 1), (1, 2, 2), (1, 0, 0), 2)
    assert conv.weight.shape == (6, 2, 3, 1, 1) and conv.bias is not None and conv.bias.shape == (6,)


@pytest.mark.parametrize(
    ("act", "fn"), [("relu", F.relu), ("swish", F.silu), (None, lambda x: x)], ids=["relu", "swish", "none"]
)
@pytest.mark.parametrize("norm", [True, False])
def test_forward_is_conv_then_bn_then_the_activation(act, fn, norm):
    torch.manual_seed(0)
    m = ConvModule(3, 5, 3, 1, 1, norm=norm, act=act, bn_eps=1e-3, bias=not norm).eval()
    if norm:  # BN statistics far from (0, 1), so that a skipped or misplaced BN shows
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.weight.data.uniform_(0.5, 2)
        m.bn.bias.data.uniform_(-1, 1)
    else:
        assert m.bn is None
    x = torch.randn(2, 3, 4, 6, 6)
    y = F.conv3d(x, m.conv.weight, m.conv.bias, padding=1)
    if norm:
        y = F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, eps=1e-3)
    expected = fn(y)
    out = m(x)
    torch.testing.assert_close(out, expected)
    assert (out < 0).any() == (act != "relu")  # the activation really runs (and only where asked)


def test_a_custom_conv_replaces_the_built_one():
    conv = nn.Conv3d(3, 5, (1, 3, 3), padding=(0, 1, 1))
    m = ConvModule(3, 5, conv=conv, act=None)
    assert m.conv is conv
    assert [name for name, _ in m.named_children()] == ["conv", "bn"]  # mmcv's names: the authors' keys load as-is


def test_an_unknown_activation_names_the_value_and_the_choices():
    with pytest.raises(ValueError) as info:
        ConvModule(3, 5, act="gelu")
    assert str(info.value) == "act='gelu': expected one of ['relu', 'swish'] or None"


# BN epsilon per family (authors' configs, mmaction2 0.x): ResNet3d-based SlowOnly / SlowFast and X3D keep BN3d's
# 1e-5; ir-CSN sets 1e-3 everywhere; R(2+1)D-34 sets 1e-3 on the outer BNs and leaves 1e-5 inside its factorised
# convolutions (test_models_r2plus1d.py checks which is which). R(2+1)D-18 follows torchvision (1e-5).
_BN_EPS = {"csn": {1e-3}, "resnet50_3x3x3": {1e-3}, "r2plus1d18": {1e-5}, "r2plus1d": {1e-5, 1e-3}}


@pytest.mark.parametrize("name", list_models())
def test_every_model_is_built_with_its_family_bn_epsilon(name):
    family = max((k for k in _BN_EPS if name.startswith(k)), key=len, default=None)  # "r2plus1d18" before "r2plus1d"
    with torch.device("meta"):
        model = create_model(name)
    eps = {m.eps for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert eps == _BN_EPS.get(family, {1e-5})
