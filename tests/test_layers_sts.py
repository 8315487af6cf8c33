"""STSConv3d: drop-in parity with nn.Conv3d, numerics against independent constructions, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidprior import STSConv3d, profile
from vidprior.errors import StsShapeError, UnsupportedConvError
from vidprior.layers.sts import STATIC_MODES, parse_static_ratio

DT = torch.float64
KERNELS = [(3, 1, 1), (3, 3, 3)]
GROUPS = ["1", "2", "dw"]
STRIDES = [(1, 1, 1), (1, 2, 2), (2, 1, 1), (2, 2, 2)]
SIZES = [(5, 7, 9), (1, 6, 5), (4, 8, 8)]  # odd T/H/W, T = 1, even sizes


def _make(kernel, groups, stride, *, cin=8, cout=8, bias=True, padding=None, **opts):
    g = {"1": 1, "2": 2, "dw": cin}[groups] if isinstance(groups, str) else groups
    if g == cin:
        cout = cin
    k = kernel[1]
    pad = (1, k // 2, k // 2) if padding is None else padding
    conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=pad, groups=g, bias=bias, dtype=DT)
    sts = STSConv3d(cin, cout, kernel, stride=stride, padding=pad, groups=g, bias=bias, dtype=DT, **opts)
    sts.load_state_dict(conv.state_dict(), strict=True)
    return conv, sts


def _static_input(sts: STSConv3d, x: torch.Tensor) -> torch.Tensor:
    if sts.groups == 1:
        return x
    return x[:, : sts.static_groups * (sts.in_channels // sts.groups)]


# ---------------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("groups", GROUPS)
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"static_ratio": "1:2"},
        {"static_ratio": "2:1"},
        {"static_ratio": 0.0},
        {"static_ratio": 1.0},
        {"static_mode": "center"},
        {"static_mode": "dilated", "static_dilation": 2},
        {"static_mode": "dilated", "static_dilation": 3},
    ],
    ids=["1:1", "1:2", "2:1", "r0", "r1", "center", "dil2", "dil3"],
)
def test_drop_in_parity_with_conv3d(kernel, groups, stride, bias, opts):
    conv, sts = _make(kernel, groups, stride, bias=bias, **opts)
    # same parameters and state dict, loadable strictly both ways
    assert sum(p.numel() for p in sts.parameters()) == sum(p.numel() for p in conv.parameters())
    sd_c, sd_s = conv.state_dict(), sts.state_dict()
    assert list(sd_c) == list(sd_s)
    assert all(sd_c[k].shape == sd_s[k].shape for k in sd_c)
    back = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        kernel,
        stride=stride,
        padding=conv.padding,
        groups=conv.groups,
        bias=bias,
        dtype=DT,
    )
    back.load_state_dict(sts.state_dict(), strict=True)
    assert all(torch.equal(back.state_dict()[k], sd_c[k]) for k in sd_c)
    for size in SIZES:
        x = torch.randn(2, conv.in_channels, *size, dtype=DT)
        y = sts(x)
        assert y.shape == conv(x).shape, size
        assert torch.isfinite(y).all()
    # equal multiply-adds (modes cross and dilated); "center" uses only a third of the static taps
    shape = (2, conv.in_channels, 5, 7, 9)
    m_conv = profile(nn.Sequential(conv), shape).macs
    m_sts = profile(nn.Sequential(sts), shape).macs
    if opts.get("static_mode", "cross") == "center" and sts.num_static > 0:
        assert m_sts < m_conv
    else:
        assert m_sts == m_conv


@pytest.mark.parametrize("kernel", [(3, 1, 1), (3, 3, 3), (3, 5, 5)])
@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2)])
def test_macs_equal_analytic_count(kernel, groups, stride):
    cin = cout = 16
    sts = STSConv3d(cin, cout, kernel, stride=stride, padding=(1, kernel[1] // 2, kernel[2] // 2), groups=groups)
    shape = (2, cin, 4, 9, 10)
    with torch.no_grad():
        out_elems = sts(torch.zeros(shape)).numel()
    per_output = math.prod(kernel) * cin // groups  # 3*k^2 for depthwise (3,k,k); 3*C_in/groups for (3,1,1)
    assert profile(nn.Sequential(sts), shape).macs_by_op["conv"] == out_elems * per_output


# ---------------------------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("groups", GROUPS)
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("ratio", [0.5, "1:2", "2:1", 1.0])
@pytest.mark.parametrize("size", [(5, 7, 9), (1, 6, 5), (4, 8, 8)])
def test_zero_pad_static_branch_equals_plain_conv3d_construction(groups, stride, ratio, size):
    """Cross mode, (3, k, k): centre slice as (1,k,k) + first slice as (1,1,k^2) + last slice as (1,k^2,1)."""
    conv, sts = _make((3, 3, 3), groups, stride, static_ratio=ratio)
    x = torch.randn(2, 8, *size, dtype=DT)
    n, g = sts.num_static, sts.static_groups
    w, b = conv.weight[:n].detach(), conv.bias[:n].detach()
    cin = w.shape[1]
    st, s = stride[0], stride[1]
    xs = _static_input(sts, x)[:, :, ::st]  # same temporal padding: output t is centred on frame t*st

    def plain(kernel, weight, padding, bias=None):
        m = nn.Conv3d(cin * g, n, kernel, stride=(1, s, s), padding=padding, groups=g, bias=bias is not None, dtype=DT)
        with torch.no_grad():
            m.weight.copy_(weight.reshape(m.weight.shape))
            if bias is not None:
                m.bias.copy_(bias)
        return m(xs)

    ref = (
        plain((1, 3, 3), w[:, :, 1], (0, 1, 1), b)
        + plain((1, 1, 9), w[:, :, 0], (0, 0, 4))
        + plain((1, 9, 1), w[:, :, 2], (0, 4, 0))
    )
    y = sts(x)
    torch.testing.assert_close(y[:, :n], ref)
    if n < 8:  # dynamic group = ordinary Conv3d of its filters
        gd = conv.groups - g if conv.groups > 1 else 1
        xd = x if conv.groups == 1 else x[:, g * (8 // conv.groups) :]
        dyn = F.conv3d(xd, conv.weight[n:], conv.bias[n:], stride, (1, 1, 1), 1, gd)
        torch.testing.assert_close(y[:, n:], dyn)


@pytest.mark.parametrize("groups", ["1", "2", "dw"])
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("mode", ["cross", "dilated"])
def test_zero_pad_temporal_kernel_static_branch(groups, stride, mode):
    """(3, 1, 1): first static half = taps as (1,1,3) along W, second half = (1,3,1) along H."""
    conv, sts = _make((3, 1, 1), groups, stride, static_mode=mode, static_dilation=2)
    x = torch.randn(2, 8, 5, 7, 9, dtype=DT)
    d = 2 if mode == "dilated" else 1
    n = sts.num_static
    w, b = conv.weight.detach(), conv.bias.detach()
    st, s = stride[0], stride[1]
    xs = _static_input(sts, x)[:, :, ::st]
    # the split stated here, not read back from the layer: the first half horizontal, the larger one when odd,
    # in filters for an ungrouped conv and in whole groups for a grouped one
    if conv.groups == 1:
        xh = xv = xs
        gh = gv = 1
        nh = n - n // 2
    else:
        cpg = 8 // conv.groups
        gh = sts.static_groups - sts.static_groups // 2
        gv = sts.static_groups - gh
        nh = gh * (conv.out_channels // conv.groups)
        xh, xv = xs[:, : gh * cpg], xs[:, gh * cpg :]
    h = F.conv3d(xh, w[:nh].reshape(nh, -1, 1, 1, 3), b[:nh], (1, s, s), (0, 0, d), (1, 1, d), gh)
    parts = [h]
    if n > nh:  # with 2 groups the single static group is all horizontal
        cin = w.shape[1]
        parts.append(F.conv3d(xv, w[nh:n].reshape(n - nh, cin, 1, 3, 1), b[nh:n], (1, s, s), (0, d, 0), (1, d, 1), gv))
    y = sts(x)
    torch.testing.assert_close(y[:, :n], torch.cat(parts, 1))


def _embedded_kernel(w: torch.Tensor, k: int, mode: str, d: int) -> torch.Tensor:
    """Independent statement of the static kernel as ONE square 2D kernel (zeros elsewhere)."""
    size = k * k if mode == "cross" else d * (k - 1) + 1
    size = max(size, k)
    mid, c = size // 2, (k - 1) // 2
    e = w.new_zeros(w.shape[0], w.shape[1], size, size)
    e[:, :, mid - c : mid + c + 1, mid - c : mid + c + 1] += w[:, :, 1]
    if mode == "cross":
        e[:, :, mid, :] += w[:, :, 0].reshape(w.shape[0], w.shape[1], -1)
        e[:, :, :, mid] += w[:, :, 2].reshape(w.shape[0], w.shape[1], -1)
    elif mode == "dilated":
        taps = torch.arange(-c, c + 1) * d + mid
        for t in (0, 2):
            e[:, :, taps[:, None], taps[None, :]] += w[:, :, t]
    return e


@pytest.mark.parametrize("padding", [(0, 0, 0), (1, 1, 1), (2, 2, 2), (1, 0, 2), (0, 2, 0)])
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2), (1, 2, 1)])
@pytest.mark.parametrize("mode", ["cross", "dilated", "center"])
def test_any_padding_matches_embedded_kernel(padding, stride, mode):
    """With non-"same" padding the static branch stays aligned with the 3D conv's centre tap."""
    conv, sts = _make((3, 3, 3), 1, stride, padding=padding, static_mode=mode, static_dilation=3)
    x = torch.randn(2, 8, 6, 9, 11, dtype=DT)
    y = sts(x)
    assert y.shape == conv(x).shape
    n = sts.num_static
    e = _embedded_kernel(conv.weight[:n].detach(), 3, mode, 3)
    grow = (e.shape[-1] - 3) // 2
    pt, ph, pw = padding
    # frames: output t reads frame t*st - pt + 1; F.pad with negative amounts crops
    xp = F.pad(x, (pw + grow, pw + grow, ph + grow, ph + grow, pt - 1, pt - 1))
    ref = F.conv3d(xp, e.unsqueeze(2), conv.bias[:n], stride)
    torch.testing.assert_close(y[:, :n], ref[:, :, : y.shape[2], : y.shape[3], : y.shape[4]])
    assert ref.shape[2:] == y.shape[2:]


def test_static_ratio_zero_is_exactly_conv3d():
    for kernel, groups in [((3, 1, 1), 1), ((3, 3, 3), 8), ((3, 3, 3), 1)]:
        conv = nn.Conv3d(8, 8, kernel, padding=(1, kernel[1] // 2, kernel[1] // 2), groups=groups)
        sts = STSConv3d.from_conv3d(conv, static_ratio=0.0)
        x = torch.randn(2, 8, 5, 7, 7)
        assert sts.num_static == 0
        assert torch.equal(sts(x), conv(x))


def test_dense_shift_path_equals_branch_path_forward_and_backward():
    for mode, bias, cl in itertools.product(["cross", "dilated"], [True, False], [False, True]):
        sts = STSConv3d(12, 10, (3, 1, 1), padding=(1, 0, 0), bias=bias, static_mode=mode, static_dilation=2, dtype=DT)
        assert sts._use_shift_path()
        x = torch.randn(2, 12, 5, 6, 7, dtype=DT)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x.requires_grad_(True)
        y_fast = sts(x)
        y_ref = sts._forward_branches(x)
        torch.testing.assert_close(y_fast, y_ref)
        assert y_fast.is_contiguous(memory_format=torch.channels_last_3d if cl else torch.contiguous_format)
        go = torch.randn_like(y_ref)
        params = [x, sts.weight] + ([sts.bias] if bias else [])
        g_fast = torch.autograd.grad(y_fast, params, go)
        g_ref = torch.autograd.grad(y_ref, params, go)
        for a, b in zip(g_fast, g_ref):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("groups", GROUPS)
@pytest.mark.parametrize("kernel", [(3, 1, 1), (3, 3, 3), (3, 5, 5)])
@pytest.mark.parametrize("stride", [(1, 2, 1), (1, 1, 2), (2, 1, 2)])
def test_non_square_spatial_strides_match_conv3d_in_every_path(groups, kernel, stride):
    conv, sts = _make(kernel, groups, stride)
    x = torch.randn(2, 8, 5, 9, 8, dtype=DT)
    y = sts(x)  # training form: the depthwise frames path where it applies, else the general path
    assert y.shape == conv(x).shape
    torch.testing.assert_close(y, sts._forward_branches(x))
    if groups == "dw" and kernel[1] > 1 and stride[0] == 1:
        assert sts._use_frames_path()
    with torch.no_grad():
        torch.testing.assert_close(sts.eval()(x), y)  # the inference form


@pytest.mark.parametrize(
    "kwargs,shift,frames",
    [
        # the paper's shapes: dense (3, 1, 1) temporal convs, depthwise (3, k, k) convs of CSN and X3D
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0)}, True, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "static_mode": "dilated"}, True, False),
        ({"kernel_size": 3, "padding": 1, "groups": 8}, False, True),
        ({"kernel_size": 3, "padding": 1, "groups": 8, "stride": (1, 2, 2)}, False, True),
        ({"kernel_size": (3, 5, 5), "padding": (1, 2, 2), "groups": 8}, False, True),
        # elsewhere the general path: other layouts, paddings, strides, groupings and modes
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "static_mode": "center"}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "stride": (1, 2, 2)}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "stride": (2, 1, 1)}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (0, 0, 0)}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 1, 0)}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "groups": 2}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "layout": "official"}, False, False),
        ({"kernel_size": (3, 1, 1), "padding": (1, 0, 0), "groups": 8}, False, False),
        ({"kernel_size": 3, "padding": 1, "groups": 8, "layout": "official"}, False, False),
        ({"kernel_size": 3, "padding": (2, 1, 1), "groups": 8}, False, False),
        ({"kernel_size": 3, "padding": (1, 0, 1), "groups": 8}, False, False),
        ({"kernel_size": 3, "padding": (1, 1, 2), "groups": 8}, False, False),
        ({"kernel_size": (3, 5, 5), "padding": (1, 1, 1), "groups": 8}, False, False),
        ({"kernel_size": 3, "padding": 1, "groups": 8, "stride": (2, 1, 1)}, False, False),
        ({"kernel_size": 3, "padding": 1, "groups": 4}, False, False),
        ({"kernel_size": 3, "padding": 1}, False, False),
    ],
)
def test_fast_paths_run_exactly_where_they_apply(kwargs, shift, frames):
    """The fast paths exist for speed: losing one for the paper's shapes is a regression; taking one elsewhere
    would be wrong (the frames path knows only "same" zero padding, temporal stride 1 and one filter per channel)."""
    sts = STSConv3d(8, 8, dtype=DT, **kwargs)
    assert (sts._use_shift_path(), sts._use_frames_path()) == (shift, frames)
    x = torch.randn(1, 8, 4, 6, 6, dtype=DT)
    torch.testing.assert_close(sts(x), sts._forward_branches(x))


@pytest.mark.parametrize("channels,ratio", [(2, 0.5), (3, "1:2"), (3, "2:1")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_frames_path_with_single_static_or_dynamic_channels_keeps_the_layout(channels, ratio, channels_last):
    sts = STSConv3d(channels, channels, 3, padding=1, groups=channels, static_ratio=ratio, dtype=DT)
    assert sts._use_frames_path() and min(sts.num_static, channels - sts.num_static) == 1
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    x = torch.randn(2, channels, 4, 5, 6, dtype=DT).contiguous(memory_format=fmt)
    y = sts(x)
    torch.testing.assert_close(y, sts._forward_branches(x))
    assert y.is_contiguous(memory_format=fmt)


def test_a_depthwise_layer_with_a_channel_multiplier_takes_the_general_path():
    sts = STSConv3d(4, 8, 3, padding=1, groups=4, dtype=DT)  # two filters per input channel
    assert not sts._use_frames_path()
    conv = nn.Conv3d(4, 8, 3, padding=1, groups=4, dtype=DT)
    x = torch.randn(1, 4, 4, 6, 6, dtype=DT)
    assert sts(x).shape == conv(x).shape


def test_shift_path_gradcheck_small():
    sts = STSConv3d(3, 5, (3, 1, 1), padding=(1, 0, 0), dtype=DT)
    x = torch.randn(1, 3, 3, 2, 4, dtype=DT, requires_grad=True)  # tiny sizes: shifts reach every border case
    assert torch.autograd.gradcheck(sts, (x,))


@pytest.mark.parametrize("kernel,groups", [((3, 1, 1), 1), ((3, 3, 3), 8), ((3, 3, 3), 1), ((3, 1, 1), 2)])
@pytest.mark.parametrize("mode", ["cross", "center", "dilated"])
def test_gradients_reach_every_parameter(kernel, groups, mode):
    sts = STSConv3d(8, 8, kernel, padding=(1, kernel[1] // 2, kernel[1] // 2), groups=groups, static_mode=mode)
    x = torch.randn(2, 8, 4, 7, 7)
    sts(x).pow(2).sum().backward()
    gw = sts.weight.grad
    assert gw is not None and sts.bias.grad is not None
    assert torch.isfinite(gw).all() and (sts.bias.grad != 0).all()
    n = sts.num_static
    # dynamic filters use all taps; static filters use the side slices except in "center" mode
    assert (gw[n:].abs().sum(dim=(1, 3, 4)) > 0).all()
    side = gw[:n][:, :, [0, 2]]
    if mode == "center":
        assert torch.count_nonzero(side) == 0
    else:
        assert (side.abs().sum(dim=(1, 3, 4)) > 0).all()


def test_static_filters_read_only_their_groups():
    sts = STSConv3d(8, 8, (3, 3, 3), padding=1, groups=8)
    x = torch.zeros(1, 8, 4, 6, 6, requires_grad=True)
    y = sts(x)
    n = sts.num_static
    (g,) = torch.autograd.grad(y[:, :n].sum(), x)
    assert torch.count_nonzero(g[:, n:]) == 0 and torch.count_nonzero(g[:, :n]) > 0


def test_unbatched_input_and_dtypes():
    sts = STSConv3d(4, 6, (3, 3, 3), padding=1)
    x = torch.randn(4, 5, 6, 6)
    torch.testing.assert_close(sts(x), sts(x.unsqueeze(0)).squeeze(0))
    y = sts.double()(x.double())
    assert y.dtype == torch.float64


def test_meta_device_forward_shape():
    sts = STSConv3d(16, 16, (3, 3, 3), stride=(1, 2, 2), padding=1, groups=16, device="meta", layout="official")
    y = sts(torch.empty(2, 16, 8, 14, 14, device="meta"))
    assert y.shape == (2, 16, 8, 7, 7) and y.device.type == "meta"


# ---------------------------------------------------------------------------------------------------------- official
def _official_restatement(x, weight, stride_s, groups_static, n_static):
    """The authors' static computation restated with conv1d on (B*T, C, H*W) sequences (docs/method.md)."""
    b, c, t, h, w = x.shape
    cin = weight.shape[1]
    xs = x[:, : groups_static * cin] if groups_static * cin < c else x
    ws = weight[:n_static]
    s = stride_s
    # centre slice: plain 3x3 per frame
    frames = xs.transpose(1, 2).reshape(b * t, -1, h, w)
    center = F.conv2d(frames, ws[:, :, 1], None, s, 1, 1, groups_static)
    ho, wo = center.shape[-2:]
    # row: (h w) flattening, 9-tap conv1d, stride s*s, padding 4
    seq_row = frames.reshape(b * t, -1, h * w)
    row = F.conv1d(seq_row, ws[:, :, 0].reshape(n_static, cin, 9), None, s * s, 4, 1, groups_static)
    row = row.reshape(b * t, n_static, ho, wo)
    # column: (w h) flattening, read back in (w h) order
    seq_col = frames.transpose(2, 3).reshape(b * t, -1, w * h)
    col = F.conv1d(seq_col, ws[:, :, 2].reshape(n_static, cin, 9), None, s * s, 4, 1, groups_static)
    col = col.reshape(b * t, n_static, wo, ho).transpose(2, 3)
    out = center + row + col
    return out.reshape(b, t, n_static, ho, wo).transpose(1, 2)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(4, 8, 8), (3, 6, 10), (2, 12, 4)])
@pytest.mark.parametrize("groups", [16, 2])
def test_official_layout_equals_restated_authors_computation(stride, size, groups):
    sts = STSConv3d(
        16, 16, (3, 3, 3), stride=(1, stride, stride), padding=1, groups=groups, layout="official", bias=False, dtype=DT
    )
    x = torch.randn(2, 16, *size, dtype=DT)
    y = sts(x)
    ref = _official_restatement(x, sts.weight.detach(), stride, sts.static_groups, sts.num_static)
    torch.testing.assert_close(y[:, : sts.num_static], ref)
    # the dynamic half is the plain depthwise/grouped 3D conv in both layouts
    zp = STSConv3d(16, 16, (3, 3, 3), stride=(1, stride, stride), padding=1, groups=groups, bias=False, dtype=DT)
    zp.load_state_dict(sts.state_dict())
    torch.testing.assert_close(y[:, sts.num_static :], zp(x)[:, sts.num_static :])


def test_official_layout_wraps_around_rows_unlike_zero_pad():
    sts = STSConv3d(2, 2, (3, 3, 3), padding=1, groups=2, layout="official", bias=False, dtype=DT)
    zp = STSConv3d(2, 2, (3, 3, 3), padding=1, groups=2, bias=False, dtype=DT)
    zp.load_state_dict(sts.state_dict())
    x = torch.randn(1, 2, 2, 8, 8, dtype=DT)
    a, b = sts(x)[:, :1], zp(x)[:, :1]
    # interior columns 4..3+ (away from row ends by >= 4) agree; the row ends differ (wrap-around)
    torch.testing.assert_close(a[..., 4:-4, 4:-4], b[..., 4:-4, 4:-4])
    assert not torch.allclose(a[..., :, :4], b[..., :, :4])


def test_official_temporal_kernel_equals_restatement():
    """(3, 1, 1): quarter A = 3-tap conv1d over (h w) sequences, quarter B over (w h) (docs/method.md)."""
    sts = STSConv3d(6, 8, (3, 1, 1), padding=(1, 0, 0), layout="official", bias=False, dtype=DT)
    x = torch.randn(2, 6, 3, 5, 7, dtype=DT)
    y = sts(x)
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    wgt = sts.weight.detach().reshape(8, 6, 3)
    a = F.conv1d(frames.reshape(b * t, c, h * w), wgt[:2], None, 1, 1).reshape(b * t, 2, h, w)
    v = F.conv1d(frames.transpose(2, 3).reshape(b * t, c, w * h), wgt[2:4], None, 1, 1)
    v = v.reshape(b * t, 2, w, h).transpose(2, 3)
    ref = torch.cat([a, v], 1).reshape(b, t, 4, h, w).transpose(1, 2)
    torch.testing.assert_close(y[:, :4], ref)
    torch.testing.assert_close(y[:, 4:], F.conv3d(x, sts.weight[4:], None, 1, (1, 0, 0)))


@pytest.mark.parametrize("h,w", [(7, 7), (7, 8), (8, 7)])  # either side alone odd is refused too
def test_official_layout_rejects_odd_sizes_at_stride_two(h, w):
    sts = STSConv3d(8, 8, (3, 3, 3), stride=(1, 2, 2), padding=1, groups=8, layout="official")
    with pytest.raises(StsShapeError, match=rf"got H={h}, W={w}.*zero_pad"):
        sts(torch.randn(1, 8, 4, h, w))
    assert sts(torch.randn(1, 8, 4, 8, 8)).shape == (1, 8, 4, 4, 4)


# ---------------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kernel_size": (1, 3, 3)}, r"\(1, 3, 3\).*temporal size 1"),
        ({"kernel_size": (5, 3, 3)}, r"\(5, 3, 3\).*temporal kernel 3"),
        ({"kernel_size": (3, 3, 1)}, r"\(3, 3, 1\).*not square"),
        ({"kernel_size": (3, 2, 2)}, r"even spatial size"),
        ({"kernel_size": 3, "dilation": 2}, r"dilation \(2, 2, 2\)"),
        ({"kernel_size": 3, "padding_mode": "reflect"}, r"padding_mode='reflect'"),
        ({"kernel_size": 3, "static_mode": "crosss"}, r"did you mean 'cross'"),
        ({"kernel_size": 3, "layout": "oficial"}, r"did you mean 'official'"),
        ({"kernel_size": 3, "static_mode": "dilated", "static_dilation": 1}, r"static_dilation=1"),
        ({"kernel_size": 3, "static_mode": "dilated", "layout": "official", "padding": 1}, r"no dilated mode"),
        (
            {"kernel_size": 3, "layout": "official", "padding": 0},
            r"'same' padding \(1, 1, 1\).*got \S+ \(0, 0, 0\)",
        ),
        (
            {"kernel_size": (3, 5, 5), "layout": "official", "padding": 1},
            r"padding \(1, 2, 2\).*got \S+ \(1, 1, 1\)",
        ),
        (
            {"kernel_size": (3, 1, 1), "stride": 2, "layout": "official", "padding": (1, 0, 0)},
            r"does not cover spatial stride \(2, 2\) on a \(3, 1, 1\) kernel .*; use layout='zero_pad'$",
        ),
        ({"kernel_size": 3, "stride": (1, 2, 1), "layout": "official"}, r"same spatial stride along H and W"),
    ],
)
def test_unsupported_configurations_raise_one_clear_error(kwargs, match):
    kwargs = {"padding": 1, **kwargs}
    with pytest.raises(UnsupportedConvError, match=match):
        STSConv3d(8, 8, **kwargs)


@pytest.mark.parametrize(
    "text,share", [("1:1", 0.5), ("0:1", 0.0), ("1:0", 1.0), ("0.5:1", 1 / 3), ("3:1", 0.75), (" 2 : 1 ", 2 / 3)]
)
def test_static_dynamic_strings_at_and_inside_the_edges(text, share):
    assert parse_static_ratio(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["-1:2", "1:-2", "-1:-1", "inf:1", "1:inf", "nan:1", "0:0"])
def test_bad_static_dynamic_strings_say_which_rule_they_break(text):
    with pytest.raises(UnsupportedConvError, match="both parts must be finite, >= 0 and not both 0"):
        parse_static_ratio(text)


def test_from_conv3d_checks_the_conv_and_its_options():
    with pytest.raises(UnsupportedConvError, match="did you mean 'static_ratio'"):
        STSConv3d.from_conv3d(nn.Conv3d(4, 4, 3, padding=1), static_ration=0.5)
    with pytest.raises(UnsupportedConvError, match="padding_mode='reflect'"):
        STSConv3d.from_conv3d(nn.Conv3d(4, 4, 3, padding=1, padding_mode="reflect"))
    for bias in (True, False):
        conv = nn.Conv3d(4, 4, 3, padding=1, bias=bias)
        sts = STSConv3d.from_conv3d(conv)
        assert sts.weight is conv.weight and sts.bias is conv.bias
        back = sts.to_conv3d()
        assert back.weight is conv.weight and back.bias is conv.bias and back.padding_mode == "zeros"
        assert list(back.state_dict()) == list(conv.state_dict())


def test_train_without_an_argument_means_training():
    sts = STSConv3d(4, 4, 3, padding=1).eval()
    assert sts.train().training and sts.training


@pytest.mark.parametrize("kernel", [(3, 1, 1), (3, 3, 3), (3, 5, 5)])
@pytest.mark.parametrize("mode", ["cross", "dilated"])
def test_padding_strings_equal_their_numbers(kernel, mode):
    k = kernel[1]
    x = torch.randn(1, 4, 5, 7, 8, dtype=DT)
    for text, numbers in [("same", (1, k // 2, k // 2)), ("valid", (0, 0, 0))]:
        named = STSConv3d(4, 6, kernel, padding=text, static_mode=mode, dtype=DT)
        plain = STSConv3d(4, 6, kernel, padding=numbers, static_mode=mode, dtype=DT)
        plain.load_state_dict(named.state_dict())
        y = named(x)
        assert y.shape == nn.Conv3d(4, 6, kernel, padding=text)(x.float()).shape
        torch.testing.assert_close(y, plain(x), rtol=0, atol=0)


def test_constructor_defaults_follow_nn_conv3d_and_the_paper():
    sts = STSConv3d(4, 4, 3)  # nn.Conv3d's default padding is 0
    x = torch.randn(1, 4, 5, 7, 7)
    assert sts(x).shape == nn.Conv3d(4, 4, 3)(x).shape == (1, 4, 3, 5, 5)
    assert STSConv3d(4, 4, 3, static_mode="dilated").static_dilation == 2  # the paper's first ablated value
    assert STSConv3d(4, 4, 3, device="meta").weight.is_meta


def test_configuration_errors_name_the_layer():
    with pytest.raises(UnsupportedConvError) as err:
        STSConv3d(8, 6, (1, 3, 3))
    assert str(err.value).startswith("Conv3d(8, 6, kernel_size=(1, 3, 3)) cannot be STS: ")
    for bad in (2.5, "2", True, 1):
        with pytest.raises(UnsupportedConvError, match="static_dilation="):
            STSConv3d(8, 8, 3, static_mode="dilated", static_dilation=bad)


def test_error_messages_in_full():
    """The messages users read, word for word: what is wrong, the value, and what to do."""
    from vidprior.layers import sts_support

    def message(fn, *args, **kwargs) -> str:
        with pytest.raises((UnsupportedConvError, StsShapeError)) as err:
            fn(*args, **kwargs)
        return str(err.value)

    assert message(parse_static_ratio, [0.5]) == (
        "static_ratio=[0.5] (list): expected a number in [0, 1] or a string like '1:1'"
    )
    assert message(parse_static_ratio, 1.5) == (
        "static_ratio=1.5: the share of static output channels must lie in [0, 1] (0.5 is the paper's 1:1 default; "
        "Table 10 also uses '1:2' and '2:1')"
    )
    assert sts_support((5, 3, 3)) == (
        "kernel (5, 3, 3) has temporal size 5; STS is defined for temporal kernel 3, i.e. kernels (3, 1, 1) and "
        "(3, k, k) with odd k"
    )
    assert sts_support((3, 3, 3)) is None and sts_support((3, 1, 1)) is None  # zero padding by default
    official = STSConv3d(4, 4, 3, stride=(1, 2, 2), padding=1, layout="official")
    assert message(official, torch.randn(1, 4, 3, 7, 8)) == (
        "layout='official' with spatial stride 2 needs H and W divisible by 2 (the authors' flattened stride-4 "
        "convolution cannot be reshaped otherwise); got H=7, W=8. Use layout='zero_pad' or an input size divisible "
        "by the stride"
    )


def test_repr_says_the_split_and_only_the_options_that_differ():
    assert repr(STSConv3d(8, 8, 3, padding=1)) == (
        "STSConv3d(8, 8, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), static=4/8, static_mode='cross')"
    )
    official = repr(STSConv3d(8, 8, 3, padding=1, layout="official", static_ratio=1.0))
    assert official.endswith("static=8/8, static_mode='cross', layout='official')")
    assert "static_dilation" not in official
    dilated = repr(STSConv3d(8, 8, 3, padding=1, static_mode="dilated", static_dilation=3))
    assert dilated.endswith("static=4/8, static_mode='dilated', static_dilation=3)")


def test_too_small_inputs_are_refused_with_the_sizes_padding_included():
    sts = STSConv3d(4, 4, (3, 5, 5), padding=1)  # "valid"-ish: needs H, W >= 3
    with pytest.raises(StsShapeError, match=r"input \(T, H, W\)=\(4, 2, 6\) is too small"):
        sts(torch.randn(1, 4, 4, 2, 6))
    assert sts(torch.randn(1, 4, 4, 3, 3)).shape == (1, 4, 4, 1, 1)


def test_an_unknown_static_mode_lists_every_mode_with_what_it_does():
    from vidprior.layers import STATIC_MODE_SPECS

    with pytest.raises(UnsupportedConvError) as err:
        STSConv3d(8, 8, 3, padding=1, static_mode="diagonal")
    listed = ", ".join(f"{name!r}: {spec.summary}" for name, spec in STATIC_MODE_SPECS.items())
    assert str(err.value).endswith(f"expected one of {listed}")


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), "1:x", "abc", "1:2:3", True, None, "0:0", [0.5]])
def test_bad_static_ratio_raises(ratio):
    with pytest.raises(UnsupportedConvError, match="static_ratio"):
        STSConv3d(8, 8, 3, padding=1, static_ratio=ratio)


def test_static_ratio_parsing_and_group_rounding():
    assert parse_static_ratio("1:2") == pytest.approx(1 / 3)
    assert parse_static_ratio("2:1") == pytest.approx(2 / 3)
    assert parse_static_ratio(1) == 1.0
    assert STSConv3d(12, 12, 3, padding=1, static_ratio="1:2").num_static == 4
    dw = STSConv3d(64, 64, 3, padding=1, groups=64, static_ratio="1:2")
    assert dw.num_static == 21 and dw.static_groups == 21  # 64/3 = 21.3 -> whole channels
    g4 = STSConv3d(16, 16, 3, padding=1, groups=4, static_ratio=0.3)  # 1.2 groups -> 1 group of 4 filters
    # ungrouped: the static filters form one group when there are any
    assert [STSConv3d(8, 8, 3, static_ratio=r).static_groups for r in (0.0, 0.05, 0.1, 1.0)] == [0, 0, 1, 1]
    assert [STSConv3d(8, 8, 3, static_ratio=r).num_static for r in (0.0, 0.05, 0.1, 1.0)] == [0, 0, 1, 8]
    assert (g4.static_groups, g4.num_static) == (1, 4)
    # (3,1,1): the static filters split again, the first (horizontal) half the larger when odd
    t = STSConv3d(8, 10, (3, 1, 1), padding=(1, 0, 0))
    assert (t.num_static, t.num_horizontal) == (5, 3)

    def split(cin, cout, groups, ratio):
        t = STSConv3d(cin, cout, (3, 1, 1), padding=(1, 0, 0), groups=groups, static_ratio=ratio)
        return t.num_static, t.static_groups, t.num_horizontal, t.horizontal_groups

    # ungrouped: one horizontal group whenever there is a horizontal filter (even a single one), none otherwise
    assert [split(8, 8, 1, r) for r in (0.0, 0.1, 0.25, 1.0)] == [
        (0, 0, 0, 0),
        (1, 1, 1, 1),
        (2, 1, 1, 1),
        (8, 1, 4, 1),
    ]
    # grouped: whole groups, the first half horizontal (the larger when odd); 2 filters per group here
    assert [split(16, 16, 8, r)[1:] for r in (0.125, 0.25, 0.375, 0.5, 0.625)] == [
        (1, 2, 1), (2, 2, 1), (3, 4, 2), (4, 4, 2), (5, 6, 3)
    ]  # fmt: skip


def test_bad_input_shapes_raise():
    sts = STSConv3d(8, 8, 3, padding=1)
    with pytest.raises(StsShapeError, match="got 4 input channels"):
        sts(torch.randn(1, 4, 3, 5, 5))
    with pytest.raises(StsShapeError, match=r"\(B, C, T, H, W\)"):
        sts(torch.randn(8, 5, 5))
    tight = STSConv3d(8, 8, 3, padding=0)
    with pytest.raises(StsShapeError, match="too small"):
        tight(torch.randn(1, 8, 2, 5, 5))


def test_from_conv3d_shares_parameters_and_roundtrips():
    conv = nn.Conv3d(8, 16, (3, 3, 3), stride=(1, 2, 2), padding=1, groups=2)
    sts = STSConv3d.from_conv3d(conv, static_ratio="1:2", static_mode="dilated", static_dilation=3)
    assert sts.weight is conv.weight and sts.bias is conv.bias
    assert (sts.stride, sts.padding, sts.groups) == (conv.stride, conv.padding, conv.groups)
    back = sts.to_conv3d()
    assert type(back) is nn.Conv3d and back.weight is conv.weight
    x = torch.randn(1, 8, 3, 6, 6)
    assert torch.equal(back(x), conv(x))
    with pytest.raises(UnsupportedConvError, match="unknown"):
        STSConv3d.from_conv3d(conv, static_ration=0.5)
    assert "static=8/16" in repr(sts) and "static_dilation=3" in repr(sts)


@pytest.mark.parametrize("tap_dim,channel_dim", [(2, 1), (5, 4)])
def test_shift_sum_gradcheck_with_partial_segments(tap_dim, channel_dim):
    """The shifted tap sum (used by the fast paths): gradients exact, including channels outside every segment,
    shifts longer than the axis and dilated spacing."""
    from vidprior.layers._shift_sum import shift_sum

    y_shape = [2, 6, 3, 2, 4] if channel_dim == 1 else [2, 3, 2, 4, 6]
    z_shape = [*y_shape[:tap_dim], 3, *y_shape[tap_dim:]]
    z = torch.randn(z_shape, dtype=DT, requires_grad=True)
    axes = (2, 3, 4) if channel_dim == 1 else (1, 2, 3)
    segments = ((0, 2, axes[2], 1), (2, 3, axes[1], 2), (3, 5, axes[0], 1))  # channel 5 in no segment
    assert torch.autograd.gradcheck(
        lambda t: shift_sum(t, tap_dim=tap_dim, channel_dim=channel_dim, segments=segments), (z,)
    )
    y = shift_sum(z, tap_dim=tap_dim, channel_dim=channel_dim, segments=segments)
    centre = z.select(tap_dim, 1)
    torch.testing.assert_close(y.select(channel_dim, 5), centre.select(channel_dim, 5))


def _shift_sum_reference(z, tap_dim, channel_dim, segments):
    """shift_sum written position by position: y[i] = z0[i - d] + z1[i] + z2[i + d] (zero outside the axis)."""
    y = z.select(tap_dim, 1).clone()
    for c0, c1, axis, d in segments:
        for c in range(c0, c1):
            yc = y.select(channel_dim, c)  # a view: written in place
            ax = axis if axis < channel_dim else axis - 1  # the axis index once the channel dim is selected
            z0 = z.select(tap_dim, 0).select(channel_dim, c)
            z2 = z.select(tap_dim, 2).select(channel_dim, c)
            n = yc.shape[ax]
            for i in range(n):
                if i - d >= 0:
                    yc.select(ax, i).add_(z0.select(ax, i - d))
                if i + d < n:
                    yc.select(ax, i).add_(z2.select(ax, i + d))
    return y


def test_shift_sum_takes_segments_in_any_order_empty_ones_and_shifts_past_the_axis():
    from vidprior.layers._shift_sum import shift_sum

    z = torch.randn(2, 7, 3, 3, 2, 5, dtype=DT, requires_grad=True)  # (B, C=7, tap, T=3, H=2, W=5)
    # descending channel order, an empty segment before others, a shift of 3 on an axis of 2 (only the centre
    # tap lands), a shift equal to the axis length, channel 6 in no segment
    segments = ((4, 6, 2, 1), (3, 3, 4, 1), (2, 4, 3, 3), (1, 2, 4, 5), (0, 1, 3, 1))
    got = shift_sum(z, tap_dim=2, channel_dim=1, segments=segments)
    torch.testing.assert_close(got, _shift_sum_reference(z.detach(), 2, 1, segments))
    gy = torch.randn_like(got)
    (grad,) = torch.autograd.grad(got, z, gy)
    (want,) = torch.autograd.grad(_shift_sum_reference(z, 2, 1, segments), z, gy)
    torch.testing.assert_close(grad, want)


def test_shift_path_gradient_when_the_vertical_half_is_empty():
    """One static filter: it is horizontal, the vertical segment is empty, and the dynamic segment after it must
    still get its gradient (the shift path against the general path)."""
    sts = STSConv3d(3, 2, (3, 1, 1), padding=(1, 0, 0), bias=True, dtype=DT)
    assert (sts.num_static, sts.num_horizontal) == (1, 1) and sts._use_shift_path()
    x = torch.randn(2, 3, 4, 3, 5, dtype=DT)
    fast = sts(x)
    (g_fast,) = torch.autograd.grad(fast, sts.weight, torch.ones_like(fast))
    slow = sts._forward_branches(x)
    (g_slow,) = torch.autograd.grad(slow, sts.weight, torch.ones_like(slow))
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(g_fast, g_slow)


# ---------------------------------------------------------------------------------------------------------- mode table
def test_every_static_mode_in_the_table_is_accepted_and_documented():
    from vidprior.layers.sts_modes import STATIC_MODE_SPECS

    assert tuple(STATIC_MODE_SPECS) == STATIC_MODES
    for name, spec in STATIC_MODE_SPECS.items():
        assert spec.name == name and spec.summary
        assert all(side.tap in (0, 2) for side in spec.side_slices)
        for kernel in KERNELS:
            conv, sts = _make(kernel, "1", (1, 1, 1), static_mode=name)
            x = torch.randn(1, 8, 3, 5, 5, dtype=DT)
            assert sts(x).shape == conv(x).shape
            # the table's MAC claim: side slices become as many taps as they had
            macs = profile(nn.Sequential(sts), (1, 8, 3, 5, 5)).macs_by_op["conv"]
            full = profile(nn.Sequential(conv), (1, 8, 3, 5, 5)).macs_by_op["conv"]
            assert (macs == full) == spec.equal_macs or kernel[1] == 1
        official = dict(kernel_size=3, padding=1, static_mode=name, layout="official")
        if spec.official:
            STSConv3d(4, 4, **official)
        else:
            with pytest.raises(UnsupportedConvError, match=f"no {name} mode"):
                STSConv3d(4, 4, **official)
