"""export: torch.export (.pt2) and ONNX with a dynamic batch, for every tiny model with and without STS."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests._util import randomize
from vidprior.analysis.export import export_model, inference_form
from vidprior.cli import main
from vidprior.layers.sts import STSConv3d
from vidprior.models import create_model, list_models

TINY = list_models("*_tiny")


def _model(name: str, sts: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = randomize(create_model(name, num_classes=5, sts="all" if sts else False))
    with torch.no_grad():
        model.cls_head.fc_cls.weight.normal_(std=1.0)  # logits of order 1, so that 1e-4 means something
    return model.eval()


def test_inference_form_computes_the_same_with_plain_convolutions():
    from vidprior.layers.fuse import FusedSTSConv3d

    model = _model("r2plus1d_tiny", sts=True)
    plain = inference_form(model)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, STSConv3d) for m in plain.modules())  # every STS layer in its inference form
    assert sum(isinstance(m, FusedSTSConv3d) for m in plain.modules()) == len(model.sts_layers)
    assert any(isinstance(m, STSConv3d) for m in model.modules())  # the original is not modified
    assert plain.state_dict().keys() == model.state_dict().keys()


@pytest.mark.slow  # ONNX translation takes 5-60 s per model on a busy CPU
@pytest.mark.parametrize("sts", [False, True], ids=["plain", "sts"])
@pytest.mark.parametrize("name", TINY)
def test_every_tiny_model_exports_and_matches_at_two_batch_sizes(tmp_path, name, sts):
    model = _model(name, sts)
    frames = model.default_clip[0]
    report = export_model(model, (frames, 32, 32), tmp_path, check_batches=(1, 3), atol=1e-4)
    assert set(report.files) == {"pt2", "onnx"}
    assert set(report.max_abs_diff) == {"pt2@1", "pt2@3", "onnx@1", "onnx@3"}
    assert all(d <= 1e-4 for d in report.max_abs_diff.values())
    # the exported program on its own, at a batch size it was not traced with
    program = torch.export.load(report.files["pt2"]).module()
    x = torch.randn(2, 3, frames, 32, 32)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(program(x), ref, atol=1e-4, rtol=0)


def test_export_refuses_a_model_whose_output_does_not_match(tmp_path):
    class Drifting(torch.nn.Module):  # a model that reads a global counter is not a function of its input
        calls = 0

        def forward(self, x):
            Drifting.calls += 1
            return x.flatten(1).sum(1, keepdim=True) + Drifting.calls

    from vidprior.errors import VidpriorError

    with pytest.raises(VidpriorError, match="differs from PyTorch"):
        export_model(Drifting(), (2, 4, 4), tmp_path, formats=("pt2",))


@pytest.mark.slow  # one real ONNX export (~10-30 s on a busy CPU)
def test_export_command_writes_both_files_and_a_report(tmp_path, capsys):
    from safetensors.torch import save_file

    model = _model("slowonly_tiny", sts=False)
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    out = tmp_path / "exp"
    args = ["export", str(weights), "--model", "slowonly_tiny", "--frames", "4", "--size", "32", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "export.json").read_text())
    assert report["batch"] == "dynamic" and set(report["files"]) == {"pt2", "onnx"}
    import onnxruntime as ort

    session = ort.InferenceSession(report["files"]["onnx"], providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 4, 32, 32)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)
    assert "onnx" in capsys.readouterr().out
