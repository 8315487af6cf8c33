"""2D <-> 3D weight transfer: kernels, real convolutions, whole state dicts and error reporting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidprior import deflate_state_dict, deflate_weight, inflate_state_dict, inflate_weight, load_inflated
from vidprior.errors import TransferError, VidpriorError

DT = torch.float64

# (C_out, C_in/groups, k, k) shapes: dense, grouped (C_in=8, g=2), depthwise (g=C), 1x1, 7x7
KERNEL_SHAPES = [(8, 3, 3, 3), (8, 4, 3, 3), (6, 1, 3, 3), (5, 7, 1, 1), (4, 3, 7, 7)]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _w(shape, dtype=torch.float32):
    return torch.randn(shape, dtype=dtype)


# ------------------------------------------------------------------------------------------------ kernel level
@pytest.mark.parametrize("kt", [1, 3, 5])
@pytest.mark.parametrize("shape", KERNEL_SHAPES)
def test_center_inflate_deflate_round_trip_is_exact(kt, shape):
    w = _w(shape)
    w3 = inflate_weight(w, kt, "center")
    assert w3.shape == (shape[0], shape[1], kt, shape[2], shape[3])
    assert w3.dtype == w.dtype
    assert torch.equal(w3[:, :, kt // 2], w)
    others = [t for t in range(kt) if t != kt // 2]
    assert torch.count_nonzero(w3[:, :, others]) == 0
    back = deflate_weight(w3, "center")
    assert torch.equal(back, w)
    # also the explicit index of the centre slice
    assert torch.equal(deflate_weight(w3, kt // 2), w)


def test_inflate_returns_a_new_tensor():
    w = _w((4, 3, 3, 3))
    w3 = inflate_weight(w, 1, "center")
    w3.add_(1.0)
    assert not torch.equal(w3[:, :, 0], w)  # w untouched


def test_inflate_accepts_temporal_size_one_kernel():
    w = _w((4, 3, 3, 3))
    assert torch.equal(inflate_weight(w.unsqueeze(2), 3, "center"), inflate_weight(w, 3, "center"))
    with pytest.raises(TransferError):
        inflate_weight(_w((4, 3, 2, 3, 3)), 3, "center")


@pytest.mark.parametrize("kt", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", KERNEL_SHAPES)
def test_mean_inflation_and_sum_deflation(kt, shape):
    w = _w(shape, DT)
    w3 = inflate_weight(w, kt, "mean")
    assert w3.shape == (shape[0], shape[1], kt, shape[2], shape[3])
    for t in range(kt):
        torch.testing.assert_close(w3[:, :, t], w / kt, rtol=0, atol=0)
    torch.testing.assert_close(deflate_weight(w3, "sum"), w, rtol=1e-12, atol=1e-12)


def test_center_needs_odd_kt():
    with pytest.raises(TransferError, match="odd"):
        inflate_weight(_w((4, 3, 3, 3)), 4, "center")
    with pytest.raises(TransferError, match="odd"):
        deflate_weight(_w((4, 3, 4, 3, 3)), "center")


def test_explicit_rates_scale_every_slice_including_centre():
    rates = (1 / 9, 1 / 3, 1 / 9)
    w = _w((8, 4, 3, 3), DT)
    w3 = inflate_weight(w, 3, rates)
    assert w3.shape == (8, 4, 3, 3, 3)
    for t, r in enumerate(rates):
        torch.testing.assert_close(w3[:, :, t], r * w, rtol=1e-15, atol=0)
    # the centre slice is scaled too: it is not w
    assert not torch.allclose(w3[:, :, 1], w)


@pytest.mark.parametrize("rates", [(0.5, 0.5), (0.1, 0.2, 0.3, 0.4), ()])
def test_rates_of_wrong_length_raise(rates):
    with pytest.raises(TransferError) as info:
        inflate_weight(_w((4, 3, 3, 3)), 3, rates)
    msg = str(info.value)
    assert f"{len(rates)} entries" in msg
    assert "temporal size 3" in msg


def test_mapping_mode_per_kt():
    rates = (1 / 9, 1 / 3, 1 / 9)
    mode = {3: rates, 5: "center"}
    w = _w((6, 2, 3, 3), DT)
    w3 = inflate_weight(w, 3, mode)
    assert torch.equal(w3, inflate_weight(w, 3, rates))
    w5 = inflate_weight(w, 5, mode)
    assert torch.equal(w5, inflate_weight(w, 5, "center"))
    for kt in (1, 7):
        with pytest.raises(TransferError, match=f"temporal size {kt}"):
            inflate_weight(w, kt, mode)


def test_bad_arguments_raise_transfer_error():
    w = _w((4, 3, 3, 3))
    with pytest.raises(TransferError):
        inflate_weight(w, 3, "centre")
    with pytest.raises(TransferError):
        inflate_weight(w, 0, "center")
    with pytest.raises(TransferError):
        inflate_weight(torch.zeros(4, 3, 3), 3, "center")
    with pytest.raises(TransferError):
        deflate_weight(w, "center")  # 4-D is not a 3D kernel
    with pytest.raises(TransferError, match="out of range"):
        deflate_weight(inflate_weight(w, 3), 3)
    assert issubclass(TransferError, VidpriorError)


# ------------------------------------------------------------------------------------------- real convolutions
def _frames_2d(conv2d: nn.Conv2d, clip: torch.Tensor) -> torch.Tensor:
    """Apply a 2D conv to every frame of a (B, C, T, H, W) clip; returns (B, C_out, T, H', W')."""
    b, c, t, h, w = clip.shape
    y = conv2d(clip.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def _pair(cin, cout, k, kt, groups=1, stride=1, bias=True):
    conv2d = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=bias, dtype=DT)
    conv3d = nn.Conv3d(
        cin,
        cout,
        (kt, k, k),
        stride=(1, stride, stride),
        padding=(kt // 2, k // 2, k // 2),
        groups=groups,
        bias=bias,
        dtype=DT,
    )
    return conv2d, conv3d


@pytest.mark.parametrize(
    ("cin", "cout", "k", "groups", "stride"),
    [(3, 8, 3, 1, 1), (8, 8, 3, 2, 1), (6, 6, 3, 6, 1), (4, 6, 5, 1, 2), (4, 6, 1, 1, 1)],
    ids=["dense3x3", "grouped", "depthwise", "5x5-stride2", "1x1"],
)
@pytest.mark.parametrize("kt", [3, 5])
def test_center_inflated_conv_equals_framewise_2d_conv_on_any_clip(cin, cout, k, groups, stride, kt):
    conv2d, conv3d = _pair(cin, cout, k, kt, groups, stride)
    with torch.no_grad():
        conv3d.weight.copy_(inflate_weight(conv2d.weight, kt, "center"))
        conv3d.bias.copy_(conv2d.bias)
    clip = torch.randn(2, cin, 6, 9, 10, dtype=DT)  # every frame different
    y3 = conv3d(clip)
    y2 = _frames_2d(conv2d, clip)
    assert y3.shape == y2.shape
    torch.testing.assert_close(y3, y2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("cin", "cout", "k", "groups"), [(3, 8, 3, 1), (8, 8, 3, 4), (4, 6, 1, 1)])
def test_mean_inflated_conv_equals_2d_conv_on_static_clip_away_from_borders(cin, cout, k, groups):
    kt = 3
    conv2d, conv3d = _pair(cin, cout, k, kt, groups)
    with torch.no_grad():
        conv3d.weight.copy_(inflate_weight(conv2d.weight, kt, "mean"))
        conv3d.bias.copy_(conv2d.bias)
    frame = torch.randn(2, cin, 1, 8, 8, dtype=DT)
    t = 5
    clip = frame.expand(-1, -1, t, -1, -1).contiguous()  # the same frame repeated
    y3 = conv3d(clip)
    y2 = _frames_2d(conv2d, clip)
    torch.testing.assert_close(y3[:, :, 1 : t - 1], y2[:, :, 1 : t - 1], rtol=1e-12, atol=1e-12)
    # at the borders the zero temporal padding removes one tap: a third of the kernel is missing
    for border in (0, t - 1):
        assert not torch.allclose(y3[:, :, border], y2[:, :, border], rtol=1e-3, atol=1e-3)
        # and what is missing is exactly the 2D conv of the frame without bias, divided by kt
        no_bias = y2[:, :, border] - conv2d.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(y2[:, :, border] - y3[:, :, border], no_bias / kt, rtol=1e-10, atol=1e-12)


def test_temporal_kernel_from_pointwise_conv():
    """(3, 1, 1) kernel inflated from a 1x1 conv: centre = per-frame 1x1 conv; mean = same on a static clip."""
    cin, cout = 6, 5
    conv2d = nn.Conv2d(cin, cout, 1, dtype=DT)
    conv3d = nn.Conv3d(cin, cout, (3, 1, 1), padding=(1, 0, 0), dtype=DT)
    clip = torch.randn(2, cin, 5, 4, 7, dtype=DT)
    with torch.no_grad():
        conv3d.weight.copy_(inflate_weight(conv2d.weight, 3, "center"))
        conv3d.bias.copy_(conv2d.bias)
    torch.testing.assert_close(conv3d(clip), _frames_2d(conv2d, clip), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        conv3d.weight.copy_(inflate_weight(conv2d.weight, 3, "mean"))
    static = clip[:, :, :1].expand(-1, -1, 5, -1, -1)
    y3, y2 = conv3d(static), _frames_2d(conv2d, static)
    torch.testing.assert_close(y3[:, :, 1:-1], y2[:, :, 1:-1], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(y3[:, :, 0], y2[:, :, 0], rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------- state-dict level
class Net2d(nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.conv3(x)
        return self.fc(x.mean(dim=(-2, -1)))


class Net3d(nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(8)
        self.conv2 = nn.Conv3d(8, 8, (3, 3, 3), stride=(1, 2, 2), padding=1, groups=2)
        self.bn2 = nn.BatchNorm3d(8)
        self.conv3 = nn.Conv3d(8, 16, 1)  # temporal size 1
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.conv3(x)
        return self.fc(x.mean(dim=(-3, -2, -1)))


CONV_WEIGHTS = ["conv1.weight", "conv2.weight", "conv3.weight"]


@pytest.fixture
def net2d() -> Net2d:
    net = Net2d().to(DT)
    # non-trivial BN statistics and affine parameters, so that eval mode really uses them
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
            bn.num_batches_tracked.fill_(17)
    return net.eval()


def test_inflate_state_dict_accounts_for_every_tensor(net2d):
    net3d = Net3d().to(DT)
    sd2 = net2d.state_dict()
    state, report = inflate_state_dict(sd2, net3d)
    assert set(state) == set(net3d.state_dict()) == set(sd2)
    assert sorted(report.inflated) == sorted(CONV_WEIGHTS)
    assert sorted(report.copied) == sorted(set(sd2) - set(CONV_WEIGHTS))
    assert "bn1.num_batches_tracked" in report.copied
    assert {"conv2.bias", "conv3.bias", "fc.weight", "fc.bias"} <= set(report.copied)
    assert report.skipped == {}
    for key, value in net3d.state_dict().items():
        assert state[key].shape == value.shape, key
        assert state[key].dtype == value.dtype, key
    for key in report.copied:
        assert torch.equal(state[key], sd2[key]), key
        assert state[key].data_ptr() != sd2[key].data_ptr(), f"{key} is shared with the source, not copied"


def test_load_inflated_3d_net_on_single_frame_matches_2d_net(net2d):
    net3d = Net3d().to(DT)
    report = load_inflated(net3d, net2d.state_dict())
    assert sorted(report.inflated) == sorted(CONV_WEIGHTS)
    net3d.eval()
    image = torch.randn(2, 3, 12, 12, dtype=DT)
    with torch.no_grad():
        logits2 = net2d(image)
        logits3 = net3d(image.unsqueeze(2))  # T = 1
    torch.testing.assert_close(logits3, logits2, rtol=1e-10, atol=1e-10)
    # the BN buffers were really loaded (the net would differ with default statistics)
    assert torch.equal(net3d.bn1.running_var, net2d.bn1.running_var)
    assert int(net3d.bn1.num_batches_tracked) == 17


def test_deflate_state_dict_round_trip(net2d):
    net3d = Net3d().to(DT)
    load_inflated(net3d, net2d.state_dict())
    back, report = deflate_state_dict(net3d.state_dict(), Net2d().to(DT))
    sd2 = net2d.state_dict()
    assert set(back) == set(sd2)
    assert sorted(report.inflated) == sorted(CONV_WEIGHTS)
    for key, value in sd2.items():
        assert torch.equal(back[key], value), key


def test_deflate_sum_inverts_mean_inflation(net2d):
    net3d = Net3d().to(DT)
    load_inflated(net3d, net2d.state_dict(), mode="mean")
    torch.testing.assert_close(net3d.conv1.weight[:, :, 0], net2d.conv1.weight / 3, rtol=0, atol=0)
    back, _ = deflate_state_dict(net3d.state_dict(), net2d, slice="sum")
    for key, value in net2d.state_dict().items():
        torch.testing.assert_close(back[key], value, rtol=1e-12, atol=1e-12)


def test_inflate_state_dict_mapping_mode_uses_rule_per_kernel(net2d):
    net3d = Net3d().to(DT)
    state, _ = inflate_state_dict(net2d.state_dict(), net3d, mode={3: "mean", 1: "center"})
    torch.testing.assert_close(state["conv1.weight"][:, :, 2], net2d.conv1.weight / 3, rtol=0, atol=0)
    assert torch.equal(state["conv3.weight"][:, :, 0], net2d.conv3.weight)
    with pytest.raises(TransferError, match=r"conv3\.weight"):  # no rule for temporal size 1
        inflate_state_dict(net2d.state_dict(), net3d, mode={3: "center"})


# ------------------------------------------------------------------------------------------------- errors
def test_missing_key_is_named(net2d):
    sd = dict(net2d.state_dict())
    del sd["bn2.running_mean"]
    with pytest.raises(TransferError) as info:
        inflate_state_dict(sd, Net3d().to(DT))
    msg = str(info.value)
    assert "bn2.running_mean" in msg
    assert "missing" in msg


def test_unexpected_key_is_named(net2d):
    sd = dict(net2d.state_dict())
    sd["head.extra.weight"] = torch.zeros(3)
    with pytest.raises(TransferError) as info:
        inflate_state_dict(sd, Net3d().to(DT))
    msg = str(info.value)
    assert "head.extra.weight" in msg
    assert "not in the target" in msg


def test_shape_mismatch_names_key_and_shapes(net2d):
    sd = dict(net2d.state_dict())
    sd["conv1.weight"] = torch.zeros(4, 3, 3, 3, dtype=DT)  # 4 filters instead of 8
    sd["bn1.weight"] = torch.zeros(6, dtype=DT)
    with pytest.raises(TransferError) as info:
        inflate_state_dict(sd, Net3d().to(DT))
    msg = str(info.value)
    assert "conv1.weight" in msg
    assert str((4, 3, 3, 3)) in msg
    assert str((8, 3, 3, 3, 3)) in msg
    assert "bn1.weight" in msg
    assert str((6,)) in msg
    assert str((8,)) in msg


def test_all_problems_reported_at_once(net2d):
    sd = dict(net2d.state_dict())
    del sd["bn1.bias"]
    sd["stray"] = torch.zeros(1)
    sd["fc.weight"] = torch.zeros(7, 16, dtype=DT)
    with pytest.raises(TransferError) as info:
        inflate_state_dict(sd, Net3d().to(DT))
    msg = str(info.value)
    for key in ("bn1.bias", "stray", "fc.weight"):
        assert key in msg


def test_deflate_shape_mismatch_raises(net2d):
    net3d = Net3d().to(DT)
    load_inflated(net3d, net2d.state_dict())
    sd3 = dict(net3d.state_dict())
    sd3["conv2.weight"] = torch.zeros(8, 4, 3, 5, 5, dtype=DT)
    with pytest.raises(TransferError) as info:
        deflate_state_dict(sd3, net2d)
    msg = str(info.value)
    assert "conv2.weight" in msg
    assert str((8, 4, 3, 5, 5)) in msg


def test_skip_reports_classifier_of_another_size(net2d):
    net3d = Net3d(num_classes=11).to(DT)
    fc_before = net3d.fc.weight.detach().clone()
    with pytest.raises(TransferError, match=r"fc\.weight"):
        inflate_state_dict(net2d.state_dict(), net3d)
    report = load_inflated(net3d, net2d.state_dict(), skip=["fc.*"])
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert str((5, 16)) in report.skipped["fc.weight"]
    assert str((11, 16)) in report.skipped["fc.weight"]
    assert str((5,)) in report.skipped["fc.bias"]
    assert str((11,)) in report.skipped["fc.bias"]
    assert "fc.weight" not in report.copied + report.inflated
    assert torch.equal(net3d.fc.weight, fc_before)  # left at its own initialisation
    assert torch.equal(net3d.conv1.weight[:, :, 1], net2d.conv1.weight)  # the rest was loaded
    assert "fc.weight" in str(report)


def test_rename_maps_prefixed_keys(net2d):
    prefixed = {f"backbone.{k}": v for k, v in net2d.state_dict().items()}
    with pytest.raises(TransferError, match=r"backbone\.conv1\.weight"):
        inflate_state_dict(prefixed, Net3d().to(DT))
    net3d = Net3d().to(DT)
    report = load_inflated(net3d, prefixed, rename=[(r"^backbone\.", "")])
    assert sorted(report.inflated) == sorted(CONV_WEIGHTS)
    assert torch.equal(net3d.conv2.weight[:, :, 1], net2d.conv2.weight)


def test_rename_collision_raises(net2d):
    sd = dict(net2d.state_dict())
    sd["backbone.fc.bias"] = sd["fc.bias"]
    with pytest.raises(TransferError, match=r"fc\.bias"):
        inflate_state_dict(sd, Net3d().to(DT), rename=[(r"^backbone\.", "")])


@pytest.mark.parametrize("source", [[("conv1.weight", torch.zeros(1))], "weights.pth", None])
def test_non_mapping_source_raises(source):
    with pytest.raises(TransferError, match="state dict"):
        inflate_state_dict(source, Net3d())
    with pytest.raises(TransferError, match="state dict"):
        deflate_state_dict(source, Net2d())


def test_non_tensor_value_raises(net2d):
    sd = dict(net2d.state_dict())
    sd["conv1.weight"] = [1.0, 2.0]
    with pytest.raises(TransferError, match=r"conv1\.weight"):
        inflate_state_dict(sd, Net3d().to(DT))
