"""Grad-CAM: the library's 5-D handling checked by hand, localisation per frame, and the real command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.tool_fixtures import SIZE, color_videos
from vidprior.analysis.gradcam import default_layers, gradcam
from vidprior.cli import main


class ColourNet(nn.Module):
    """A 1x1x1 conv detecting red (channel 0) and green (channel 1); class c = mean of channel c over the clip."""

    def __init__(self) -> None:
        super().__init__()
        self.detect = nn.Conv3d(3, 2, 1)
        with torch.no_grad():
            self.detect.weight.zero_()
            self.detect.weight[0, 0] = 1.0
            self.detect.weight[1, 1] = 1.0
            self.detect.bias.fill_(-0.5)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.detect(x)).flatten(2).mean(2)  # (B, 2, T, H, W) or (B, 2, H, W) -> (B, 2)


def _blobs() -> torch.Tensor:
    clip = torch.zeros(3, 6, 16, 16)  # (C, T, H, W)
    clip[0, 2, 3:6, 10:13] = 1.0  # red blob in frame 2
    clip[1, 4, 11:14, 2:5] = 1.0  # green blob in frame 4
    return clip


@pytest.mark.parametrize("tap", [None, 0])  # the 3D model; its slice network, frame by frame
def test_maps_peak_where_the_class_evidence_is_and_change_with_the_class(tap):
    model = ColourNet()
    clip = _blobs()
    red = gradcam(model, clip, target=0, layer="act", tap=tap)
    green = gradcam(model, clip, target=1, layer="act", tap=tap)
    assert red.maps.shape == green.maps.shape == (6, 16, 16)  # frames x frame size
    assert red.maps.sum() > 0 and green.maps.sum() > 0
    assert np.unravel_index(red.maps.argmax(), red.maps.shape)[0] == 2
    t, h, w = np.unravel_index(red.maps.argmax(), red.maps.shape)
    assert (t, 3 <= h < 6, 10 <= w < 13) == (2, True, True)
    t, h, w = np.unravel_index(green.maps.argmax(), green.maps.shape)
    assert (t, 11 <= h < 14, 2 <= w < 5) == (4, True, True)
    assert red.maps[4].max() < 0.05 and green.maps[2].max() < 0.05  # the other class's frame stays cold
    assert not np.allclose(red.maps, green.maps)


def test_library_grad_cam_on_5d_activations_matches_a_hand_computation():
    """Channel weights = gradients averaged over (T, H, W); map = relu(sum_c w_c A_c) over the whole clip."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(2), nn.Linear(5 * 8 * 8, 1), nn.Flatten(1), nn.Linear(4, 3)
    )
    clip = torch.randn(3, 5, 8, 8)
    result = gradcam(model, clip, target=2, layer="1")
    x = clip.unsqueeze(0)
    acts = model[1](model[0](x))  # (1, 4, T, H, W)
    acts.retain_grad()
    model[5](model[4](model[3](model[2](acts))))[0, 2].backward()
    weights = acts.grad.mean(dim=(2, 3, 4))  # (1, 4)
    cam = torch.relu((weights[:, :, None, None, None] * acts).sum(1))[0].detach().numpy()  # (T, H, W)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    np.testing.assert_allclose(result.maps, cam, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "frames", "expected"),
    [
        ("slowonly_tiny", 4, ["backbone.layer4"]),
        ("x3d_tiny", 4, ["backbone.conv5"]),
        ("slowfast_tiny", 8, ["backbone.slow_path.layer4", "backbone.fast_path.layer4"]),  # one per pathway
        ("torchvision:r3d_18", 4, ["layer4"]),  # not its average pool, whose map would be one value
    ],
)
def test_default_layers_are_the_last_stage_of_each_pathway(name, frames, expected):
    from vidprior.analysis.source import load_source

    model = load_source(name).model
    assert default_layers(model, torch.zeros(1, 3, frames, 32, 32)) == expected


@pytest.mark.parametrize("tap", [None, -1])
def test_gradcam_command_writes_maps_grid_and_animation(tmp_path, tap):
    (video, _), *_ = color_videos(tmp_path / "v")
    out = tmp_path / "cam"
    extra = [] if tap is None else ["--tap", str(tap)]
    args = ["gradcam", str(video), "-w", "slowonly_tiny", "--geometry", "4x2", "--crop-size", str(SIZE)]
    assert main([*args, "--out", str(out), *extra]) == 0
    maps = np.load(out / "gradcam.npy")
    assert maps.shape == (4, SIZE, SIZE) and maps.sum() > 0
    with Image.open(out / "gradcam_grid.png") as im:
        assert im.size[0] > 0
    with Image.open(out / "gradcam.gif") as im:
        assert im.n_frames == 4


def test_gradcam_command_names_a_bad_layer(tmp_path, capsys):
    (video, _), *_ = color_videos(tmp_path / "v")
    args = ["gradcam", str(video), "-w", "slowonly_tiny", "--geometry", "4x2", "--crop-size", str(SIZE)]
    assert main([*args, "--layer", "backbone.layer9", "--out", str(tmp_path / "c")]) == 2
    assert "backbone.layer9" in capsys.readouterr().err
