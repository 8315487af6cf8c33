"""to_sts / from_sts on torchvision's video ResNets (random init): parameters, reports, outputs, errors."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn
from torchvision.models.video import r2plus1d_18, r3d_18

from vidprior import STSConv3d, from_sts, to_sts
from vidprior.errors import UnsupportedConvError

BUILDERS = {"r3d_18": r3d_18, "r2plus1d_18": r2plus1d_18}
CLIP = (1, 3, 4, 32, 32)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=sorted(BUILDERS))
def arch(request) -> str:
    return request.param


@functools.cache
def _pristine(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[arch](weights=None)


def _build(arch: str) -> nn.Module:
    """A fresh copy of the randomly initialised model (built once per session: construction is the slow part)."""
    return copy.deepcopy(_pristine(arch))


def _clip(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(CLIP, generator=g)


def _conv3ds(model: nn.Module) -> dict[str, nn.Conv3d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv3d)}


def _expected_eligible(model: nn.Module) -> list[str]:
    """Convs that STS can replace, decided here without vidprior: a plain 3D convolution (nn.Conv3d or a
    subclass that keeps nn.Conv3d's forward) with temporal kernel 3, square odd spatial kernel, no dilation and
    zero padding."""
    names = []
    for name, m in _conv3ds(model).items():
        kt, kh, kw = m.kernel_size
        if (
            type(m).forward is nn.Conv3d.forward
            and kt == 3
            and kh == kw
            and kh % 2 == 1
            and tuple(m.dilation) == (1, 1, 1)
            and m.padding_mode == "zeros"
        ):
            names.append(name)
    return names


def _structure(model: nn.Module) -> list[tuple[str, type]]:
    return [(name, type(m)) for name, m in model.named_modules()]


# ---------------------------------------------------------------------------------- parameters and state dict
def test_parameters_and_state_dict_unchanged_and_shared(arch):
    model = _build(arch)
    params_before = dict(model.named_parameters())
    sd_before = {k: v.clone() for k, v in model.state_dict().items()}
    count = sum(p.numel() for p in model.parameters())

    to_sts(model)
    assert any(isinstance(m, STSConv3d) for m in model.modules())
    for stage in ("to_sts", "from_sts"):
        assert sum(p.numel() for p in model.parameters()) == count, stage
        params = dict(model.named_parameters())
        assert list(params) == list(params_before), stage
        for name, p in params.items():
            assert p is params_before[name], f"{stage}: {name} is a new Parameter object"
        sd = model.state_dict()
        assert list(sd) == list(sd_before), stage
        for key, value in sd.items():
            assert torch.equal(value, sd_before[key]), f"{stage}: {key}"
        if stage == "to_sts":
            from_sts(model)
    assert not any(isinstance(m, STSConv3d) for m in model.modules())


def test_state_dict_loads_strictly_across_conversion(arch):
    plain = _build(arch)
    sts = _build(arch)
    to_sts(sts)
    sts.load_state_dict(plain.state_dict(), strict=True)
    plain.load_state_dict(sts.state_dict(), strict=True)


def test_optimizer_built_before_conversion_still_updates_the_model():
    model = _build("r3d_18")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    report = to_sts(model)
    assert report.converted
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.train()
    model(_clip()).square().mean().backward()
    opt.step()
    for name in report.converted:
        key = f"{name}.weight"
        assert not torch.equal(model.get_parameter(key), before[key]), f"{key} was not updated by the optimizer"
    optimised = {id(p) for group in opt.param_groups for p in group["params"]}
    assert {id(p) for p in model.parameters()} == optimised


# ------------------------------------------------------------------------------------------------- report
def test_report_lists_exactly_the_eligible_convs(arch):
    model = _build(arch)
    convs = _conv3ds(model)
    expected = _expected_eligible(model)
    assert expected, "the model has temporal convolutions"
    report = to_sts(model)
    assert report.converted == expected
    assert set(report.skipped) == set(convs) - set(expected)
    for name in expected:
        assert isinstance(model.get_submodule(name), STSConv3d), name
    for name in report.skipped:
        assert type(model.get_submodule(name)) is type(convs[name]), name


def test_r3d18_stem_is_converted():
    model = _build("r3d_18")
    assert tuple(model.stem[0].kernel_size) == (3, 7, 7)
    report = to_sts(model)
    assert "stem.0" in report.converted
    assert isinstance(model.stem[0], STSConv3d)


def test_r2plus1d18_spatial_and_pointwise_convs_are_skipped_with_reason():
    model = _build("r2plus1d_18")
    convs = _conv3ds(model)
    no_temporal = [name for name, m in convs.items() if m.kernel_size[0] == 1]
    assert any(convs[n].kernel_size == (1, 3, 3) for n in no_temporal)
    assert any(convs[n].kernel_size == (1, 1, 1) for n in no_temporal)
    report = to_sts(model)
    assert sorted(report.skipped) == sorted(no_temporal)
    for name in no_temporal:
        assert "no temporal extent" in report.skipped[name], (name, report.skipped[name])
    temporal = [name for name, m in convs.items() if m.kernel_size == (3, 1, 1)]
    assert report.converted == temporal


def test_report_str_names_layers():
    model = _build("r2plus1d_18")
    report = to_sts(model)
    text = str(report)
    assert f"converted {len(report.converted)}" in text
    assert report.converted[0] in text
    assert next(iter(report.skipped)) in text


def test_from_sts_report_lists_converted_layers(arch):
    model = _build(arch)
    report = to_sts(model)
    back = from_sts(model)
    assert sorted(back.converted) == sorted(report.converted)
    for name in report.converted:
        assert type(model.get_submodule(name)) is nn.Conv3d


# ------------------------------------------------------------------------------------------------- outputs
def test_round_trip_outputs_identical_and_sts_changes_outputs(arch):
    model = _build(arch).eval()
    x = _clip()
    with torch.no_grad():
        ref = model(x)
        to_sts(model)
        y_sts = model(x)
        from_sts(model)
        y_back = model(x)
    assert torch.equal(y_back, ref)
    assert y_sts.shape == ref.shape
    assert torch.isfinite(y_sts).all()
    assert not torch.allclose(y_sts, ref, rtol=1e-4, atol=1e-5), "STS conversion did not change the output"


def test_gradients_after_conversion_are_finite_on_every_parameter():
    model = _build("r3d_18").train()
    to_sts(model)
    out = model(_clip())
    out.logsumexp(dim=1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # the converted layers take part in the backward pass through their shared weights
    assert model.stem[0].weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------- where=
def test_where_glob_list(arch):
    model = _build(arch)
    eligible = _expected_eligible(model)
    patterns = ["stem.*", "layer2.*"]
    selected = [n for n in _conv3ds(model) if n.startswith(("stem.", "layer2."))]
    report = to_sts(model, where=patterns)
    assert report.converted == [n for n in eligible if n in selected]
    assert report.converted
    for name in _conv3ds(model):
        if name not in selected:
            assert "not selected" in report.skipped[name], name
            assert not isinstance(model.get_submodule(name), STSConv3d)


def test_where_single_glob_string():
    model = _build("r2plus1d_18")
    report = to_sts(model, where="layer4.*")
    assert report.converted
    assert all(n.startswith("layer4.") for n in report.converted)


def test_where_callable_receives_name_and_module():
    model = _build("r2plus1d_18")
    seen = []

    def pick(name, conv):
        seen.append((name, conv))
        return conv.out_channels >= 256

    convs = _conv3ds(model)
    report = to_sts(model, where=pick)
    assert [n for n, _ in seen] == list(convs)
    assert all(c is convs[n] for n, c in seen)
    expected = [n for n in _expected_eligible(_pristine("r2plus1d_18")) if convs[n].out_channels >= 256]
    assert report.converted == expected
    assert expected
    for name, conv in convs.items():
        if conv.out_channels < 256:
            assert "not selected" in report.skipped[name]


def test_where_of_wrong_type_raises():
    with pytest.raises(UnsupportedConvError):
        to_sts(_build("r2plus1d_18"), where=[1, 2])


# ------------------------------------------------------------------------------------------- options and errors
@pytest.mark.parametrize(
    "options",
    [{"static_ratio": 1.5}, {"static_mode": "crosss"}, {"static_dilation": 1}, {"statc_ratio": 0.5}],
    ids=["ratio", "mode", "dilation", "unknown-option"],
)
def test_invalid_option_raises_and_leaves_model_unchanged(arch, options):
    model = _build(arch)
    structure = _structure(model)
    params = dict(model.named_parameters())
    with pytest.raises(UnsupportedConvError):
        to_sts(model, **options)
    assert not any(isinstance(m, STSConv3d) for m in model.modules())
    assert _structure(model) == structure
    assert all(p is params[n] for n, p in model.named_parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, _pristine(arch).state_dict()[key]), key


def test_options_are_passed_to_layers():
    model = _build("r2plus1d_18")
    report = to_sts(model, static_ratio="1:2", static_mode="dilated", static_dilation=3)
    layer = model.get_submodule(report.converted[-1])
    assert isinstance(layer, STSConv3d)
    assert layer.static_mode == "dilated"
    assert layer.static_dilation == 3
    assert math.isclose(layer.static_ratio, 1 / 3)


def test_conversion_is_idempotent():
    model = _build("r2plus1d_18")
    first = to_sts(model)
    second = to_sts(model)
    assert second.converted == []
    for name in first.converted:
        assert "already" in second.skipped[name]


def test_bare_modules_are_refused():
    conv = nn.Conv3d(4, 4, 3, padding=1)
    with pytest.raises(UnsupportedConvError, match="from_conv3d"):
        to_sts(conv)
    with pytest.raises(UnsupportedConvError, match="to_conv3d"):
        from_sts(STSConv3d.from_conv3d(conv))


def test_train_eval_flag_is_kept_on_conversion():
    model = _build("r2plus1d_18").eval()
    report = to_sts(model)
    assert not any(model.get_submodule(n).training for n in report.converted)
    model.train()
    from_sts(model)
    assert all(model.get_submodule(n).training for n in report.converted)


class _OwnForward(nn.Conv3d):
    def forward(self, x):
        return super().forward(x) * 2


class _OwnConvForward(nn.Conv3d):
    def _conv_forward(self, x, weight, bias):
        return super()._conv_forward(x, weight.flip(2), bias)


def test_every_skip_reason_and_the_report_text_in_full():
    model = nn.Sequential(
        nn.Conv3d(4, 4, 3, padding=1),  # 0: converted
        nn.Conv3d(4, 4, 3, padding=2, dilation=2),  # 1: dilated
        nn.Conv3d(4, 4, 3, padding=1, padding_mode="reflect"),  # 2: reflect padding
        _OwnForward(4, 4, 3, padding=1),  # 3: its own forward
        _OwnConvForward(4, 4, 3, padding=1),  # 4: its own _conv_forward
        nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)),  # 5: no temporal extent
        nn.Conv3d(4, 4, 3, padding=1),  # 6: not selected
    )
    report = to_sts(model, where=["0", "1", "2", "3", "4", "5"])  # ineligible layers are skipped, never raised on
    assert report.converted == ["0"] and isinstance(model[0], STSConv3d)
    assert report.skipped == {
        "1": "dilation (2, 2, 2): STS supports only undilated convolutions (dilation 1)",
        "2": "padding_mode='reflect': STS is defined with zero padding only",
        "3": "_OwnForward is a subclass of nn.Conv3d with its own forward; not replaced",
        "4": "_OwnConvForward is a subclass of nn.Conv3d with its own forward; not replaced",
        "5": "kernel (1, 3, 3) has no temporal extent: nothing to separate",
        "6": "not selected by `where`",
    }
    assert to_sts(model, where="0").skipped["0"] == "already an STSConv3d"
    assert str(report).splitlines() == [
        "converted 1 layer(s), skipped 6",
        "  + 0",
        *[f"  - {name}: {why}" for name, why in report.skipped.items()],
    ]


def test_conversion_error_messages_in_full():
    with pytest.raises(UnsupportedConvError) as err:
        to_sts(_build("r2plus1d_18"), where=[1, 2])
    assert str(err.value) == "where=[1, 2]: expected a callable, a glob pattern or a list of glob patterns"
    with pytest.raises(UnsupportedConvError) as err:
        from_sts(STSConv3d(4, 4, 3, padding=1))
    assert str(err.value) == "from_sts() got a bare STSConv3d; use layer.to_conv3d() instead"
    with pytest.raises(UnsupportedConvError) as err:
        to_sts(nn.Conv3d(4, 4, 3, padding=1))
    assert str(err.value) == "to_sts() got a bare nn.Conv3d; use STSConv3d.from_conv3d(conv) instead"
    with pytest.raises(UnsupportedConvError) as err:
        to_sts(nn.Sequential(nn.Conv3d(4, 4, 3, padding=1)), static_dilation=1)
    assert str(err.value).startswith("layer '0': static_dilation=1: expected an integer >= 2")
