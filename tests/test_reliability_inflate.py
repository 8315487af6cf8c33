"""inflate_weight / deflate_weight edges and messages that mutation testing found untested."""

from __future__ import annotations

import pytest
import torch

from vidprior.errors import TransferError
from vidprior.models.inflate import _rule_for, deflate_weight, inflate_weight


def test_center_inflation_of_a_non_square_kernel():
    w = torch.randn(2, 3, 3, 5)
    out = inflate_weight(w, 3)
    assert out.shape == (2, 3, 3, 3, 5)
    assert torch.equal(out[:, :, 1], w) and not out[:, :, [0, 2]].any()


def test_inflate_refuses_bad_temporal_sizes_and_rules_with_their_messages():
    w = torch.randn(2, 3, 3, 3)
    for kt in (0, -1, 2.0, "3"):
        with pytest.raises(TransferError) as info:
            inflate_weight(w, kt)
        assert str(info.value) == f"temporal size kt={kt!r} must be a positive integer"
    with pytest.raises(TransferError) as info:
        inflate_weight(w, 3, "middle")
    assert str(info.value) == "inflation mode 'middle': expected 'center', 'mean' or a sequence of 3 rates"
    with pytest.raises(TransferError) as info:
        inflate_weight(torch.randn(2, 3, 2, 3, 3), 3)
    assert str(info.value) == "inflate_weight expects a 2D kernel or temporal size 1, got shape (2, 3, 2, 3, 3)"
    with pytest.raises(TransferError) as info:
        inflate_weight(torch.randn(2, 3, 3), 3)
    assert str(info.value) == "inflate_weight expects a 4-D conv kernel (C_out, C_in, kh, kw), got (2, 3, 3)"


def test_a_mapping_without_the_temporal_size_names_it():
    with pytest.raises(TransferError) as info:
        inflate_weight(torch.randn(2, 3, 3, 3), 5, {3: "center"})
    assert str(info.value) == (
        "no inflation rule for temporal size 5: mode maps only [3]; add an entry 5: 'center' | 'mean' | (rates...)"
    )
    with pytest.raises(TransferError, match=r"^no inflation rule for temporal size 5 for 'layer1.conv1.weight': "):
        _rule_for({3: "center", 1: "mean"}, 5, "layer1.conv1.weight")
    assert _rule_for({5: "mean"}, 5) == "mean"


def test_deflate_defaults_to_the_centre_and_accepts_every_documented_slice():
    w = torch.randn(2, 3, 3, 4, 4)
    assert torch.equal(deflate_weight(w), w[:, :, 1])
    assert torch.equal(deflate_weight(w, "sum"), w.sum(2))
    assert torch.equal(deflate_weight(w, -3), w[:, :, 0])  # the lowest negative index is in range
    assert torch.equal(deflate_weight(w, 2), w[:, :, 2])
    for bad in (3, -4):
        with pytest.raises(TransferError, match=f"slice index {bad} is out of range for temporal size 3"):
            deflate_weight(w, bad)


@pytest.mark.parametrize("bad", [True, "middle", 1.0, None])
def test_deflate_refuses_other_slices_with_its_message(bad):
    with pytest.raises(TransferError) as info:
        deflate_weight(torch.randn(2, 3, 3, 4, 4), bad)
    assert str(info.value) == f"slice={bad!r}: expected 'center', 'sum' or an integer index"


def test_deflate_refuses_a_2d_kernel_with_its_shape():
    with pytest.raises(TransferError) as info:
        deflate_weight(torch.randn(2, 3, 4, 4))
    assert str(info.value) == "deflate_weight expects a 5-D conv kernel, got shape (2, 3, 4, 4)"
