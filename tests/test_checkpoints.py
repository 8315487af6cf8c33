"""Weights users have: safe file loading, the authors' namings, ImageNet ResNet-50 (torchvision / timm names)."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

import vidprior
from vidprior.errors import TransferError, VidpriorError
from vidprior.models.checkpoints import load_imagenet_resnet, load_official, resnet_to_vidprior
from vidprior.utils.io import load_state_dict_file


# ------------------------------------------------------------------------------------------------ safe loading
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create a file when unpickled


def test_refuses_checkpoints_that_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Evil(marker)}, path)
    with pytest.raises(VidpriorError, match=r"evil\.pth: refused to load"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_reads_safetensors_and_wrapped_checkpoints(tmp_path):
    sd = {"a.weight": torch.randn(3, 2), "b": torch.arange(4)}
    save_file(sd, tmp_path / "w.safetensors")
    got = load_state_dict_file(tmp_path / "w.safetensors")
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    # timm-style: {"state_dict": ..., "args": Namespace, "epoch": int}, DDP "module." prefix
    wrapped = {"epoch": 3, "args": argparse.Namespace(lr=0.1), "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "ck.pth.tar")
    got = load_state_dict_file(tmp_path / "ck.pth.tar")
    assert sorted(got) == sorted(sd) and torch.equal(got["b"], sd["b"])


@pytest.mark.parametrize("kind", ["missing", "directory", "garbage", "empty_dict", "safetensors_garbage"])
def test_bad_files_name_the_path(tmp_path, kind):
    path = tmp_path / ("x.safetensors" if kind == "safetensors_garbage" else "x.pth")
    if kind == "directory":
        path.mkdir()
    elif kind in ("garbage", "safetensors_garbage"):
        path.write_bytes(b"\x00not a checkpoint" * 10)
    elif kind == "empty_dict":
        torch.save({}, path)
    with pytest.raises(VidpriorError, match=re.escape(str(path))):
        load_state_dict_file(path)


# ------------------------------------------------------------------------------------------------ ImageNet ResNet-50
@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().double().eval()
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("w") / "resnet50.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


@pytest.mark.parametrize("name", ["slowonly50", "resnet50_3x1x1"])
def test_imagenet_resnet50_into_image_view_and_3d_model(resnet50_file, name):
    tv, path = resnet50_file
    state = load_state_dict_file(path)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = tv(x)
    model = vidprior.create_model(name, num_classes=1000).double().eval()
    view = vidprior.image_model(model)
    report = load_imagenet_resnet(view, state)
    assert not report.skipped and len(report.copied) == len(state)
    with torch.no_grad():
        torch.testing.assert_close(view(x), expected)
    report = load_imagenet_resnet(model, state, init="center")
    assert report.inflated  # the 3x1x1 convs of res4/res5
    w = model.state_dict()["backbone.layer3.0.conv1.conv.weight"]
    assert torch.count_nonzero(w[:, :, [0, 2]]) == 0  # zero-init side taps
    with torch.no_grad():
        torch.testing.assert_close(model(x.unsqueeze(2)), expected)


def test_imagenet_resnet50_into_slowfast_reports_lateral_shapes(resnet50_file):
    _, path = resnet50_file
    state = load_state_dict_file(path)
    model = vidprior.create_model("slowfast50_4x16").double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_imagenet_resnet(model, state)
    target = model.state_dict()
    renamed = resnet_to_vidprior(state, "backbone.slow_path.")
    # independently: keys whose 2D shape cannot hold the slow path's (lateral) input channels or the head size
    expected_mismatch = sorted(
        k
        for k, v in renamed.items()
        if tuple(v.shape) != tuple(target[k].shape[:2]) + tuple(target[k].shape[3:])
        and tuple(v.shape) != tuple(target[k].shape)
    )
    mismatched = sorted(k for k, why in report.skipped.items() if why.startswith("shape"))
    assert mismatched == expected_mismatch
    assert len([k for k in mismatched if "layer" in k]) == 8  # conv1 and downsample of each stage's first block
    for k in mismatched:  # reported, not forced
        assert torch.equal(target[k], before[k])
    assert all(torch.equal(target[k], before[k]) for k in target if "fast_path" in k or "lateral" in k)
    loaded = "backbone.slow_path.layer2.1.conv2.conv.weight"
    assert not torch.equal(target[loaded], before[loaded])


def test_not_a_resnet_is_refused():
    with pytest.raises(TransferError, match="not a torchvision/timm ResNet"):
        load_imagenet_resnet(vidprior.create_model("slowonly_tiny"), {"blocks.0.weight": torch.zeros(1)})


# ------------------------------------------------------------------------------------------------ authors' namings
def _timm_naming(model: nn.Module, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """The authors' image pre-training naming (docs/method.md): get_feature.*, classifier.*, X3D fc1.*"""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            out["get_feature." + k[len("backbone.") :]] = v.clone()
        elif k.startswith("cls_head.fc1."):
            out[k[len("cls_head.") :]] = v.clone()
    cls = model.cls_head.fc2 if hasattr(model.cls_head, "fc2") else model.cls_head.fc_cls
    out["classifier.weight"] = torch.randn(num_classes, cls.in_features)
    out["classifier.bias"] = torch.randn(num_classes)
    return out


@pytest.mark.parametrize("name", [n for n in vidprior.list_models() if n.endswith("_tiny")])
def test_authors_timm_checkpoint_loads_with_prefix_change(name):
    src = vidprior.create_model(name, num_classes=1000)
    state = _timm_naming(src)
    model = vidprior.create_model(name, num_classes=174)
    report = load_official(model, state)
    got = model.state_dict()
    for k, v in src.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(got[k], v), k
    assert any("shape (1000," in why for why in report.skipped.values())
    # the fine-tuned (mmaction2) naming is vidprior's own: strict load, no key map
    fresh = vidprior.create_model(name, num_classes=174)
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_authors_checkpoint_with_center_init_zeroes_side_taps():
    src = vidprior.create_model("csn_tiny", num_classes=1000)
    model = vidprior.create_model("csn_tiny", num_classes=10)
    report = load_official(model, _timm_naming(src), init="center")
    w = model.state_dict()["backbone.layer1.0.conv2.0.conv.weight"]
    assert torch.count_nonzero(w[:, :, [0, 2]]) == 0
    torch.testing.assert_close(w[:, :, 1], src.state_dict()["backbone.layer1.0.conv2.0.conv.weight"][:, :, 1])
    assert "backbone.layer1.0.conv2.0.conv.weight" in report.inflated


def test_authors_checkpoint_for_another_architecture_is_refused():
    state = _timm_naming(vidprior.create_model("slowonly_tiny"))
    with pytest.raises(TransferError, match="missing"):
        load_official(vidprior.create_model("csn_tiny"), state)


def test_names_follow_mmaction2():
    """Names the authors' code uses (docs/method.md): CSN conv2.0.conv, SlowFast slow_path / fast_path /
    *_lateral, head fc_cls."""
    keys = set(vidprior.create_model("csn_tiny").state_dict())
    assert "backbone.layer1.0.conv2.0.conv.weight" in keys and "cls_head.fc_cls.weight" in keys
    keys = set(vidprior.create_model("slowfast_tiny").state_dict())
    for k in [
        "backbone.slow_path.conv1_lateral.conv.weight",
        "backbone.slow_path.layer3_lateral.conv.weight",
        "backbone.fast_path.layer4.0.conv1.conv.weight",
    ]:
        assert k in keys
