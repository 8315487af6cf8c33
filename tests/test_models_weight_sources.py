"""The weight-source table: every name loads through one call; skip is honoured by every source."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vidprior.errors import TransferError, VidpriorError
from vidprior.models import create_model, image_model
from vidprior.models.weight_sources import SOURCE_NAMES, WEIGHT_SOURCES, load_initial_weights


def _save(tmp_path, state, name="w.safetensors"):
    path = tmp_path / name
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    return str(path)


def test_source_names_are_the_table():
    assert SOURCE_NAMES == ("scratch", "image", "video", "official", "imagenet_resnet")
    assert set(WEIGHT_SOURCES) == set(SOURCE_NAMES)


def test_unknown_source_and_missing_path_are_named():
    model = create_model("csn_tiny", num_classes=5)
    with pytest.raises(VidpriorError, match=r"init.source='imag'.*did you mean 'image'"):
        load_initial_weights(model, source="imag", path="x")
    with pytest.raises(VidpriorError, match=r"init.checkpoint is required for init.source='video'"):
        load_initial_weights(model, source="video", path=None)


def test_scratch_reads_nothing_and_changes_nothing():
    model = create_model("csn_tiny", num_classes=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_initial_weights(model, source="scratch", path="/does/not/exist") is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_video_source_honours_skip(tmp_path):
    torch.manual_seed(0)
    src = create_model("csn_tiny", num_classes=5)
    path = _save(tmp_path, src.state_dict())
    torch.manual_seed(1)
    dst = create_model("csn_tiny", num_classes=5)
    own = {k: v.clone() for k, v in dst.state_dict().items()}
    skip = ["backbone.layer1.*", "cls_head.*"]
    report = load_initial_weights(dst, source="video", path=path, skip=skip)
    for key, value in dst.state_dict().items():
        if key.startswith(("backbone.layer1.", "cls_head.")):
            assert torch.equal(value, own[key]), key  # skipped: not loaded although the checkpoint has it
            assert key in report.skipped
        else:
            assert torch.equal(value, src.state_dict()[key]), key
    # skipped keys are not required either
    partial = {k: v for k, v in src.state_dict().items() if not k.startswith("backbone.layer1.")}
    load_initial_weights(dst, source="video", path=_save(tmp_path, partial, "p.safetensors"), skip=skip)
    with pytest.raises(TransferError, match=r"p\.safetensors.*backbone\.layer1\."):
        load_initial_weights(dst, source="video", path=str(tmp_path / "p.safetensors"))


def test_image_source_inflates_and_default_skip_is_the_classifier(tmp_path):
    torch.manual_seed(0)
    view = image_model(create_model("slowonly_tiny", num_classes=7))
    path = _save(tmp_path, view.state_dict())
    model = create_model("slowonly_tiny", num_classes=3)
    report = load_initial_weights(model, source="image", path=path, mode="center")
    assert report.inflated and all(k.startswith("cls_head.") for k in report.skipped)
    key = next(k for k in report.inflated if model.state_dict()[k].shape[2] == 3)
    w = model.state_dict()[key]
    assert torch.equal(w[:, :, 1], view.state_dict()[key]) and not w[:, :, [0, 2]].any()
