"""Shared material for the analysis-tool tests (tests/test_tool_*.py): colour videos, a trained tiny model saved as
a run folder, and the authors' checkpoint naming."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests._util import write_color_video

CLASS_NAMES = ["red", "green", "blue", "yellow"]
GEOMETRY = "4x2"  # 4 frames, every second one
SIZE = 32


def color_videos(folder: Path, per_class: int = 1, seed: int = 0) -> list[tuple[Path, int]]:
    """``per_class`` 16-frame 32x32 videos per colour class (see ``write_color_video``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for label in range(len(CLASS_NAMES)):
        for i in range(per_class):
            p = folder / f"{CLASS_NAMES[label]}_{i}.mp4"
            write_color_video(p, label, num_frames=16, size=SIZE, seed=seed + 10 * label + i)
            out.append((p, label))
    return out


def train_tiny(videos: list[tuple[Path, int]], steps: int = 30) -> nn.Module:
    """slowonly_tiny trained on the videos' test views (centre clip, centre crop), as predict reads them."""
    from vidprior.analysis.predict import load_views
    from vidprior.models import create_model

    torch.manual_seed(0)
    model = create_model("slowonly_tiny", num_classes=len(CLASS_NAMES), dropout=0.0)
    x = torch.stack([load_views(p, geometry=GEOMETRY, crop_size=SIZE, short_side=SIZE)[0] for p, _ in videos])
    y = torch.tensor([label for _, label in videos])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def write_run(folder: Path, model: nn.Module) -> Path:
    """A run folder as training leaves it: config.yaml (the recipe) and best.safetensors, plus a class-name file."""
    from safetensors.torch import save_file

    from vidprior.engine.config import load_config, save_yaml

    folder.mkdir(parents=True, exist_ok=True)
    classes = folder / "classes.txt"
    classes.write_text("\n".join(CLASS_NAMES) + "\n")
    cfg = load_config(
        None,
        [
            "model.name=slowonly_tiny",
            f"model.num_classes={len(CLASS_NAMES)}",
            f"data.train={folder / 'train.txt'}",  # what the run trained on (not read here)
            f"data.geometry={GEOMETRY}",
            "data.test_clips=2",
            "data.test_crops=1",
            f"data.crop_size={SIZE}",
            f"data.test_crop_size={SIZE}",
            f"data.test_short_side={SIZE}",
            f"data.classes={classes}",
            f"out={folder}",
        ],
    )
    save_yaml(cfg, folder / "config.yaml")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "best.safetensors"))
    return folder


def as_official_pretraining(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vidprior names -> the authors' timm-based pre-training names (``get_feature.*``, ``classifier.*``)."""
    out = {}
    for k, v in state.items():
        if k.startswith("backbone."):
            out["get_feature." + k[len("backbone.") :]] = v
        elif k.startswith("cls_head.fc_cls."):
            out["classifier." + k[len("cls_head.fc_cls.") :]] = v
    return out
