"""Whole-state-dict transfer between 2D and 3D models (vidprior.models.inflate): temporal-size-1 and non-square
kernels, per-temporal-size rules, deflation onto temporal-size-1 3D models, skip patterns, and every message in
full (the keys, shapes and counts a user needs to fix a mapping)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidprior.errors import TransferError
from vidprior.models.inflate import deflate_state_dict, inflate_state_dict, load_inflated


def _shapes(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """A target given as a state dict of shapes only (meta tensors)."""
    return {k.replace("__", "."): torch.empty(s, device="meta") for k, s in shapes.items()}


def test_inflation_of_temporal_size_one_and_non_square_kernels_with_a_rule_per_size():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, 1, 3, 5, generator=g)  # a 3D kernel of temporal size 1, 3 x 5 in space
    b = torch.randn(4, 3, 3, 5, generator=g)  # a 2D kernel, 3 x 5
    bn = torch.randn(4, generator=g)
    target = _shapes(a__weight=(4, 3, 3, 3, 5), b__weight=(4, 3, 5, 3, 5), bn__weight=(4,))
    out, report = inflate_state_dict(
        {"a.weight": a, "b.weight": b, "bn.weight": bn}, target, mode={3: "center", 5: "mean"}
    )
    assert report.inflated == ["a.weight", "b.weight"] and report.copied == ["bn.weight"] and not report.skipped
    assert out["a.weight"].shape == (4, 3, 3, 3, 5)
    torch.testing.assert_close(out["a.weight"][:, :, 1], a[:, :, 0], rtol=0, atol=0)
    assert torch.count_nonzero(out["a.weight"][:, :, [0, 2]]) == 0  # "center": zeros in the side slices
    torch.testing.assert_close(out["b.weight"], b.unsqueeze(2).expand(4, 3, 5, 3, 5) / 5)  # "mean" over 5 slices
    assert torch.equal(out["bn.weight"], bn) and out["bn.weight"].data_ptr() != bn.data_ptr()  # a copy
    with pytest.raises(TransferError) as err:
        inflate_state_dict({"a.weight": a, "b.weight": b, "bn.weight": bn}, target, mode={3: "center"})
    assert "b.weight: source (4, 3, 3, 5) -> target (4, 3, 5, 3, 5) (no inflation rule for temporal size 5 for " \
        "'b.weight': mode maps only [3]" in str(err.value)  # fmt: skip


def test_deflation_onto_2d_and_temporal_size_one_3d_targets():
    w = torch.randn(4, 3, 3, 3, 5)  # 3 x 5 in space
    for target, want in [
        (_shapes(w=(4, 3, 3, 5)), w[:, :, 1]),
        (_shapes(w=(4, 3, 1, 3, 5)), w[:, :, 1:2]),
    ]:
        out, report = deflate_state_dict({"w": w}, target)
        assert report.inflated == ["w"] and torch.equal(out["w"], want)
    out, _ = deflate_state_dict({"w": w}, _shapes(w=(4, 3, 1, 3, 5)), slice=0)
    assert torch.equal(out["w"], w[:, :, 0:1])
    out, _ = deflate_state_dict({"w": w}, _shapes(w=(4, 3, 1, 3, 5)), slice="sum")
    torch.testing.assert_close(out["w"], w.sum(2, keepdim=True))
    for bad in [
        (4, 3, 2, 3, 5),
        (4, 4, 1, 3, 5),
        (3, 3, 1, 3, 5),
        (4, 3, 1, 5, 3),
        (4, 3, 1, 3, 3),
        (4, 3, 1, 3, 5, 1),
    ]:
        with pytest.raises(TransferError) as err:
            deflate_state_dict({"w": w}, _shapes(w=bad))
        assert f"w: source (4, 3, 3, 3, 5) -> target {bad}" in str(err.value)


def test_transfer_failures_list_every_problem_in_one_message():
    source = {f"extra{i}": torch.zeros(1) for i in range(22)} | {"conv": torch.zeros(4, 3, 3, 3)}
    target = _shapes(conv=(4, 3, 3, 5, 5)) | {f"miss{i}": torch.empty(1, device="meta") for i in range(25)}
    with pytest.raises(TransferError) as err:
        inflate_state_dict(source, target)
    lines = str(err.value).split("\n  ")
    assert lines[0] == "2D -> 3D transfer failed"
    assert lines[1] == "missing in the source (25): " + ", ".join(f"miss{i}" for i in range(20))
    assert lines[2] == "not in the target (22): " + ", ".join(f"extra{i}" for i in range(20))
    assert lines[3] == "shapes that cannot be mapped (1): conv: source (4, 3, 3, 3) -> target (4, 3, 3, 5, 5)"
    assert lines[4] == "rename keys with rename=[(regex, replacement)] or list keys to leave out with skip=[glob]"
    assert len(lines) == 5
    mismatched = [f"k{i}" for i in range(21)]
    with pytest.raises(TransferError) as err:
        deflate_state_dict(
            {k: torch.zeros(2, 2, 3, 3, 3) for k in mismatched}, _shapes(**{k: (2, 2, 5, 5) for k in mismatched})
        )
    lines = str(err.value).split("\n  ")
    assert lines[0] == "3D -> 2D transfer failed"
    assert lines[1] == "shapes that cannot be mapped (21): " + "; ".join(
        f"k{i}: source (2, 2, 3, 3, 3) -> target (2, 2, 5, 5)" for i in range(20)
    )


def test_skip_patterns_are_reported_with_why_and_the_rest_still_transfers():
    source = {
        "fc.weight": torch.zeros(10, 4),
        "fc.bias": torch.zeros(4),
        "aux.w": torch.zeros(2),
        "conv": torch.ones(2, 1, 3, 3),
    }
    target = _shapes(fc__weight=(5, 4), fc__bias=(4,), fc__scale=(1,), conv=(2, 1, 3, 3, 3))
    out, report = inflate_state_dict(source, target, skip=["fc.*", "aux.*"])
    assert report.skipped == {
        "fc.weight": "matches skip pattern 'fc.*' (source (10, 4), target (5, 4))",
        "fc.bias": "matches skip pattern 'fc.*'",
        "fc.scale": "matches skip pattern 'fc.*'; not in the source",
        "aux.w": "matches skip pattern 'aux.*'; not in the target",
    }
    assert list(out) == ["conv"] and report.inflated == ["conv"]  # keys after the skipped ones still transfer
    assert str(report).splitlines() == [
        "1 reshaped, 0 copied, 4 skipped",
        *[f"  skipped {k}: {why}" for k, why in report.skipped.items()],
    ]


def test_bad_sources_are_named():
    with pytest.raises(TransferError) as err:
        inflate_state_dict([("w", torch.zeros(1))], _shapes(w=(1,)))
    assert str(err.value) == "expected a state dict (a mapping of names to tensors), got list"
    with pytest.raises(TransferError) as err:
        inflate_state_dict({"w": 3}, _shapes(w=(1,)))
    assert str(err.value) == "source entry 'w' is a int, not a tensor"


def test_load_inflated_leaves_only_skipped_keys_at_their_initialisation():
    model3d = nn.Sequential(nn.Conv3d(3, 4, (3, 3, 3), padding=1), nn.Flatten(), nn.LazyLinear(5))
    model3d(torch.zeros(1, 3, 3, 4, 4))  # materialise the classifier
    before = model3d[2].weight.detach().clone()
    source = {"0.weight": torch.randn(4, 3, 3, 3), "0.bias": torch.randn(4), "2.weight": torch.randn(9, 192),
              "2.bias": torch.randn(9)}  # fmt: skip
    report = load_inflated(model3d, source, skip=["2.*"])
    assert sorted(report.skipped) == ["2.bias", "2.weight"] and report.inflated == ["0.weight"]
    assert torch.equal(model3d[2].weight, before)  # the classifier of another size keeps its own initialisation
    torch.testing.assert_close(model3d[0].weight[:, :, 1], source["0.weight"], rtol=0, atol=0)


def test_every_kernel_without_a_rule_is_listed_not_only_the_first():
    source = {"b": torch.zeros(2, 2, 3, 3), "c": torch.zeros(2, 2, 3, 3), "d": torch.zeros(2)}
    target = _shapes(b=(2, 2, 5, 3, 3), c=(2, 2, 7, 3, 3), d=(3,))
    with pytest.raises(TransferError) as err:
        inflate_state_dict(source, target, mode={3: "center"})
    msg = str(err.value)
    assert "shapes that cannot be mapped (3): b: " in msg and "temporal size 5 for 'b'" in msg
    assert "temporal size 7 for 'c'" in msg and "d: source (2,) -> target (3,)" in msg
