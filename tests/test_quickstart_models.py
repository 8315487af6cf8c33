"""The tiny models' geometry: with the quickstart recipes' strides their STS layers see maps of at least 7x7, as the
paper's do at 224 px (14x14 and 7x7 in SlowOnly-R50's res4 / res5)."""

from __future__ import annotations

import pytest
import torch

from vidprior.engine.config import load_config, resolve_recipe
from vidprior.models import create_model


def _sts_input_sizes(model, clip) -> dict[str, tuple[int, int]]:
    sizes, hooks = {}, []
    modules = dict(model.named_modules())
    for name in model.sts_layers:
        hooks.append(modules[name].register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, i[0].shape[-2:])))
    with torch.no_grad():
        model.eval()(clip)
    for h in hooks:
        h.remove()
    return sizes


@pytest.mark.parametrize("name", ["slowonly_tiny", "csn_tiny"])
def test_quickstart_recipes_give_sts_layers_maps_of_at_least_7x7(name):
    cfg = load_config(resolve_recipe("quickstart/finetune_temporal"), [f"model.name={name}"])
    side = cfg.data.crop_size
    clip = torch.randn(1, 3, 8, side, side)  # (B, C, T, H, W) as the recipe feeds it
    model = create_model(name, num_classes=4, **cfg.model.overrides)
    sizes = _sts_input_sizes(model, clip)
    assert sizes and len(sizes) == len(model.sts_layers)
    assert all(h >= 7 and w >= 7 for h, w in sizes.values()), sizes
    # the default strides down-sample three more times: 2x2 and 1x1 maps, where 1x3 / 3x1 side convs degenerate
    default = _sts_input_sizes(create_model(name, num_classes=4), clip)
    assert min(h for h, _ in default.values()) <= 2


def test_tiny_geometry_arguments_change_the_model_or_raise():
    base = create_model("slowonly_tiny", num_classes=4)
    narrow = create_model("slowonly_tiny", num_classes=4, width=8)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in base.parameters())
    assert set(narrow.state_dict()) == set(base.state_dict())  # same names, smaller tensors
    with pytest.raises(ValueError, match="spatial_strides"):
        create_model("csn_tiny", num_classes=4, spatial_strides=(1, 3, 1, 1))
    with pytest.raises(ValueError, match="width"):
        create_model("csn_tiny", num_classes=4, width=0)
