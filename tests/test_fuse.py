"""The inference form of STS (vidprior.fuse_sts and eval()'s cached form) equals the training form."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import vidprior
from vidprior import STSConv3d, fuse_sts
from vidprior.errors import UnsupportedConvError
from vidprior.layers.fuse import FusedSTSConv3d
from vidprior.layers.sts_modes import STATIC_MODES

DT = torch.float64
CL = torch.channels_last_3d


def _layer(kernel, groups, stride, *, mode, layout="zero_pad", ratio=0.5, bias=True, padding=None):
    cin = cout = 8
    k = kernel[1]
    pad = (1, k // 2, k // 2) if padding is None else padding
    return STSConv3d(
        cin, cout, kernel, stride, pad, groups=groups, bias=bias, dtype=DT,
        static_mode=mode, static_ratio=ratio, static_dilation=2, layout=layout,
    )  # fmt: skip


def _cases():
    for kernel, groups, stride, mode, ratio in itertools.product(
        [(3, 1, 1), (3, 3, 3)], [1, 2, 8], [(1, 1, 1), (1, 2, 2), (2, 1, 1)], STATIC_MODES, [0.5, 1.0]
    ):
        yield kernel, groups, stride, mode, ratio, "zero_pad"
    for kernel, stride, groups in itertools.product([(3, 1, 1), (3, 3, 3)], [(1, 1, 1), (1, 2, 2)], [1, 8]):
        if kernel[1] == 1 and stride != (1, 1, 1):
            continue  # not covered by the official layout
        yield kernel, groups, stride, "cross", 0.5, "official"


@pytest.mark.parametrize("kernel,groups,stride,mode,ratio,layout", list(_cases()))
def test_inference_form_equals_training_form(kernel, groups, stride, mode, ratio, layout):
    sts = _layer(kernel, groups, stride, mode=mode, layout=layout, ratio=ratio)
    fused = FusedSTSConv3d(sts)
    for size, channels_last in itertools.product([(5, 6, 8), (1, 4, 6)], [False, True]):
        x = torch.randn(2, 8, *size, dtype=DT)
        if channels_last:
            x = x.contiguous(memory_format=CL)
        ref = sts.train()(x)
        with torch.no_grad():
            cached = sts.eval()(x)
        got = fused(x)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(cached, ref, rtol=0, atol=1e-5)
        if channels_last and layout == "zero_pad":  # the layout is kept: no copy back to NCDHW
            assert got.is_contiguous(memory_format=CL), got.stride()
        if not channels_last:  # ... and NCDHW stays NCDHW
            assert got.is_contiguous() and cached.is_contiguous(), got.stride()


@pytest.mark.parametrize("padding", [(0, 0, 0), (2, 2, 2), (1, 0, 2)])
def test_inference_form_with_any_padding(padding):
    for groups, mode in itertools.product([1, 8], STATIC_MODES):
        sts = _layer((3, 3, 3), groups, (1, 2, 1), mode=mode, padding=padding)
        x = torch.randn(2, 8, 5, 9, 7, dtype=DT)
        torch.testing.assert_close(FusedSTSConv3d(sts)(x), sts(x), rtol=0, atol=1e-5)


def test_float32_within_1e5_on_a_model_and_state_dict_kept():
    model = vidprior.create_model("x3d_tiny", num_classes=5, sts=True).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    keys = list(model.state_dict())
    with torch.no_grad():
        torch.set_grad_enabled(True)
        ref = model.train()(x).detach()  # BN in train mode would differ: compare eval to eval below
        model.eval()
        ref = torch.cat([model(x[i : i + 1]) for i in range(2)]).detach()
        cached = model(x)
    n_sts = sum(isinstance(m, STSConv3d) for m in model.modules())
    assert n_sts > 0
    fused = fuse_sts(model)
    assert sum(isinstance(m, FusedSTSConv3d) for m in fused.modules()) == n_sts
    assert not any(isinstance(m, STSConv3d) for m in fused.modules())  # replaced where they were, not added
    assert list(fused.state_dict()) == keys  # weights keep their names
    with torch.no_grad():
        got = fused(x)
        got_cl = fused(x.contiguous(memory_format=CL))
    for y in (cached, got, got_cl):
        torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)


def test_cached_form_follows_weight_changes_and_train():
    sts = _layer((3, 3, 3), 8, (1, 1, 1), mode="cross").eval()
    x = torch.randn(1, 8, 4, 6, 6, dtype=DT)
    with torch.no_grad():
        a = sts(x)
        sts.weight.mul_(2)  # in place: the version counter moves
        b = sts(x)
        torch.testing.assert_close(b - sts.bias.view(1, -1, 1, 1, 1), 2 * (a - sts.bias.view(1, -1, 1, 1, 1)))
        sts.weight = nn.Parameter(torch.zeros_like(sts.weight))  # replaced: a new storage
        c = sts(x)
        torch.testing.assert_close(c, sts.bias.view(1, -1, 1, 1, 1).expand_as(c))
    assert "_form_cache" in sts.__dict__
    sts.train()
    assert "_form_cache" not in sts.__dict__


def test_eval_with_weight_gradients_uses_the_training_form():
    sts = _layer((3, 3, 3), 1, (1, 1, 1), mode="cross").eval()
    sts(torch.randn(1, 8, 3, 5, 5, dtype=DT)).sum().backward()
    assert sts.weight.grad is not None and sts.weight.grad.abs().sum() > 0
    assert "_form_cache" not in sts.__dict__


def test_fused_module_follows_dtype_and_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnxruntime")
    sts = STSConv3d(4, 6, (3, 3, 3), padding=1)
    fused = fuse_sts(sts).double().float()
    x = torch.randn(1, 4, 3, 6, 6)
    torch.testing.assert_close(fused(x), sts(x), rtol=0, atol=1e-5)
    path = tmp_path / "sts.onnx"
    torch.onnx.export(fused, (x,), str(path), input_names=["x"], dynamo=False)
    out = onnx.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), sts(x).detach(), rtol=0, atol=1e-5)


def test_profile_counts_the_layers_own_macs_in_eval_mode():
    """vidprior.profile runs eval(); the cached inference form must not change the counted multiply-adds."""
    sts = STSConv3d(8, 8, (3, 3, 3), padding=1, groups=8)
    conv = sts.to_conv3d()
    shape = (1, 8, 4, 8, 8)
    for device in ("meta", None):
        macs = vidprior.profile(nn.Sequential(sts).eval(), shape, device=device).macs_by_op["conv"]
        assert macs == vidprior.profile(nn.Sequential(conv), shape, device=device).macs_by_op["conv"]


def _kernel_shapes(part) -> list[tuple[int, int]]:
    return [tuple(fk.weight.shape[-2:]) for fk in part.kernels]


@pytest.mark.parametrize(
    "k,mode,groups,want",
    [
        # dense: merged only when that costs no more multiply-adds than the kernels apart
        (3, "cross", 1, [(3, 3), (1, 9), (9, 1)]),  # 81 taps merged > 9 + 9 + 9 apart
        (5, "cross", 1, [(5, 5), (1, 25), (25, 1)]),
        (3, "dilated", 1, [(3, 3), (3, 3)]),  # the two dilated sides share their taps: 9 + 9 < 25 merged
        (3, "center", 1, [(3, 3)]),
        (3, "cross", 2, [(3, 3), (1, 9), (9, 1)]),  # grouped, not depthwise: the same rule
        # depthwise: always one merged kernel (memory bound: one pass over the input beats three)
        (3, "cross", 8, [(9, 9)]),
        (3, "dilated", 8, [(5, 5)]),
        (5, "cross", 8, [(25, 25)]),
    ],
)
def test_inference_form_merges_kernels_only_where_it_saves_work(k, mode, groups, want):
    from vidprior.layers.sts_infer import build_form

    sts = _layer((3, k, k), groups, (1, 1, 1), mode=mode)
    form = build_form(sts)
    assert [_kernel_shapes(p) for p in form.parts] == [want]
    depthwise = groups == 8
    assert (form.dw_centre is not None) == depthwise and (form.dw_sides is not None) == depthwise
    if depthwise:  # full-channel side kernels: one per distinct grid (the dilated sides share one)
        assert [tuple(fk.weight.shape) for fk in form.dw_sides] == {
            "cross": [(8, 1, 1, k * k), (8, 1, k * k, 1)], "dilated": [(8, 1, 3, 3)]
        }[mode]  # fmt: skip
        assert torch.count_nonzero(form.dw_sides[0].weight[sts.num_static :]) == 0  # zero on dynamic channels


def test_channels_last_depthwise_inference_runs_on_the_full_channel_kernels_alone():
    """On channels_last_3d input a depthwise layer's inference form is the full-channel depthwise Conv3d plus the
    side kernels; the per-part kernels are not needed (a form without them gives the same output)."""
    from vidprior.layers.sts_infer import FusedForm, build_form, run_form

    sts = _layer((3, 3, 3), 8, (1, 2, 2), mode="cross").eval()
    full = build_form(sts)
    only = FusedForm([], None, dw_centre=full.dw_centre, dw_sides=full.dw_sides, bias=full.bias)
    x = torch.randn(2, 8, 4, 6, 6, dtype=DT).contiguous(memory_format=CL)
    with torch.no_grad():
        torch.testing.assert_close(run_form(sts, x, only), sts.train()(x), rtol=0, atol=1e-10)


def test_fused_layer_shares_parameters_takes_unbatched_clips_and_unfuses():
    sts = _layer((3, 3, 3), 1, (1, 1, 1), mode="cross")
    fused = FusedSTSConv3d(sts)
    assert fused.weight is sts.weight and fused.bias is sts.bias
    assert list(fused.state_dict()) == ["weight", "bias"]
    assert fused.unfuse() is sts
    x = torch.randn(8, 1, 5, 6, dtype=DT)  # (C, T=1, H, W), as nn.Conv3d accepts: only the batch axis is added
    y = fused(x)
    assert y.shape == (8, 1, 5, 6)
    torch.testing.assert_close(y, sts(x[None])[0], rtol=0, atol=1e-10)
    with pytest.raises(UnsupportedConvError, match="FusedSTSConv3d needs an STSConv3d, got Conv3d"):
        FusedSTSConv3d(nn.Conv3d(8, 8, 3))


def test_the_cached_form_is_built_once_and_rebuilt_only_when_the_weights_change(monkeypatch):
    import vidprior.layers.sts as sts_module

    built = []
    real = sts_module.build_form
    monkeypatch.setattr(sts_module, "build_form", lambda layer: built.append(1) or real(layer))
    sts = _layer((3, 3, 3), 1, (1, 1, 1), mode="cross").eval()
    x = torch.randn(1, 8, 3, 5, 5, dtype=DT)
    with torch.no_grad():
        first = sts(x)
        for _ in range(3):
            torch.testing.assert_close(sts(x), first, rtol=0, atol=0)
        assert len(built) == 1  # prepared once, reused
        sts.weight.add_(1.0)
        sts(x)
        sts(x)
    assert len(built) == 2  # rebuilt once after the change


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_module_traced_in_eval_mode_follows_its_weights():
    """Tracing records the training form (parameters in the graph), not the cached kernels as constants."""
    sts = _layer((3, 3, 3), 1, (1, 1, 1), mode="cross").eval()
    x = torch.randn(1, 8, 3, 5, 5, dtype=DT)
    with torch.no_grad():
        traced = torch.jit.trace(sts, x)
        sts.weight.mul_(-3.0)
        torch.testing.assert_close(traced(x), sts.train()(x), rtol=0, atol=1e-10)
