"""kernels: temporal-slice energy shares of 3D kernels (paper §3.1) for vidprior, authors' and torchvision models."""

from __future__ import annotations

import json

import pytest
import torch

from tests._util import run_cli
from tests.tool_fixtures import as_official_pretraining
from vidprior.analysis.kernels import kernel_energy, slice_shares
from vidprior.cli import main
from vidprior.models import create_model, image_model, inflate_state_dict


def _inflated(name: str, mode, sts: bool = False):
    model = create_model(name, num_classes=4)
    state_2d = image_model(model).state_dict()
    state_3d, _ = inflate_state_dict(state_2d, model, mode=mode)
    model.load_state_dict(state_3d)
    if sts:
        from vidprior.models import apply_sts

        apply_sts(model, "all")
    return model


@pytest.mark.parametrize("name", ["csn_tiny", "r2plus1d_tiny", "x3d_tiny", "slowfast_tiny"])
def test_centre_inflation_gives_centre_share_one_and_mean_inflation_equal_shares(name):
    centre = kernel_energy(_inflated(name, "center"))
    mean = kernel_energy(_inflated(name, "mean"))
    assert [r.name for r in centre] == [r.name for r in mean] and len(centre) > 0
    for c, m in zip(centre, mean):
        k = len(c.shares)
        assert sum(c.shares) == pytest.approx(1.0) and sum(m.shares) == pytest.approx(1.0)
        assert c.centre == pytest.approx(1.0) and c.centre_dominates
        assert m.shares == pytest.approx([1 / k] * k)  # 1/3 each for 3 taps


def test_shares_follow_the_slices_energy():
    w = torch.zeros(2, 1, 3, 1, 1)
    w[0, 0, 0] = 1.0  # energy 1 in slice 0
    w[1, 0, 2] = 2.0  # energy 4 in slice 2
    assert slice_shares(w) == pytest.approx([0.2, 0.0, 0.8])


def test_sts_layers_report_static_and_dynamic_filters():
    rows = kernel_energy(_inflated("csn_tiny", "center", sts=True))
    sts = [r for r in rows if r.sts]
    assert sts, "csn_tiny with sts='all' has STS layers"
    for r in sts:
        assert sum(r.static_shares) == pytest.approx(1.0) and sum(r.dynamic_shares) == pytest.approx(1.0)
        assert r.static_shares[1] == pytest.approx(1.0) and r.dynamic_shares[1] == pytest.approx(1.0)


def test_torchvision_video_model():
    from vidprior.analysis.source import load_source

    rows = kernel_energy(load_source("torchvision:r2plus1d_18").model)
    assert len(rows) > 0 and all(sum(r.shares) == pytest.approx(1.0) for r in rows)


def test_kernels_command_on_an_authors_checkpoint(tmp_path, capsys):
    """The authors' pre-training naming (get_feature.*, classifier.*), centre-inflated: every centre share 1."""
    state = as_official_pretraining(_inflated("csn_tiny", "center").state_dict())
    ckpt = tmp_path / "official.pth"
    torch.save({"state_dict": state}, ckpt)
    assert main(["kernels", str(ckpt), "--model", "csn_tiny", "--out", str(tmp_path / "k")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("the centre slice dominates:")
    data = json.loads((tmp_path / "k" / "kernels.json").read_text())
    assert data["origin"] == "official"
    assert all(layer["centre"] == pytest.approx(1.0) for layer in data["layers"])
    assert (tmp_path / "k" / "kernels.png").stat().st_size > 0


def test_kernels_command_in_a_subprocess_on_a_vidprior_weights_file(tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file(_inflated("r2plus1d_tiny", "mean").state_dict(), str(weights))
    r = run_cli("kernels", str(weights), "--model", "r2plus1d_tiny", "--out", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    assert "does not dominate" in r.stdout and "mean centre share 0.333" in r.stdout
    data = json.loads((tmp_path / "k" / "kernels.json").read_text())
    assert all(layer["shares"] == pytest.approx([1 / 3] * 3) for layer in data["layers"])


def test_a_weights_file_without_model_says_what_to_add(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    torch.save(create_model("csn_tiny", num_classes=4).state_dict(), weights)
    assert main(["kernels", str(weights)]) == 2
    assert "--model" in capsys.readouterr().err
