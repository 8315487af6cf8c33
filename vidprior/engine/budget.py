"""Fair training budgets (paper §3.3, Table 2, Fig. 3): images seen, pre-training included.

A budget counts training images: pre-training ``epochs x images``, video training ``epochs x clips x frames``
(each frame of each clip is one image; Table 2). The paper compares pre-train + fine-tune with training from scratch
in two settings:

* **fixed budget**: pre-training takes the part of the from-scratch budget that fine-tuning leaves (the paper's
  100 / 150 / 300 ImageNet epochs for 8 / 16 / 32 frames against 100 from-scratch epochs, Tables 6-7);
* **train for state of the art**: 300 pre-training epochs + a fixed short fine-tune (50 epochs; X3D 100).

Dataset sizes are the paper's (Table 2 and §4): ImageNet-1K 1.28M images, Kinetics-400 0.24M clips,
Something-Something V2 0.17M clips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from vidprior.errors import VidpriorError

# instances in the paper's Table 2 (millions)
DATASETS = {"imagenet": 1.28e6, "k400": 0.24e6, "ssv2": 0.17e6}


def _size(dataset: str | float) -> float:
    if isinstance(dataset, (int, float)):
        if dataset <= 0:
            raise VidpriorError(f"dataset size {dataset!r} must be positive")
        return float(dataset)
    key = dataset.lower().replace("-", "").replace("_", "")
    aliases = {
        "kinetics400": "k400",
        "kinetics": "k400",
        "somethingsomethingv2": "ssv2",
        "sthv2": "ssv2",
        "in1k": "imagenet",
    }
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise VidpriorError(f"unknown dataset {dataset!r}; give a size or one of {sorted(DATASETS)}")
    return DATASETS[key]


def images_seen_pretrain(epochs: float, dataset: str | float = "imagenet") -> float:
    return epochs * _size(dataset)


def images_seen_video(epochs: float, frames: int, dataset: str | float = "k400") -> float:
    return epochs * frames * _size(dataset)


def truncate(x: float, digits: int = 2) -> float:
    """The paper prints budget ratios truncated, not rounded (224M / 192M = 1.1667 -> "x1.16")."""
    f = 10**digits
    return math.floor(x * f + 1e-9) / f


@dataclass(frozen=True)
class BudgetRow:
    setting: str
    frames: int
    scratch_epochs: float
    scratch_images: float
    pretrain_epochs: float
    pretrain_images: float
    finetune_epochs: float
    finetune_images: float

    @property
    def total(self) -> float:
        return self.pretrain_images + self.finetune_images

    @property
    def ratio(self) -> float:
        return self.total / self.scratch_images

    def as_dict(self) -> dict:
        return {**asdict(self), "total_images": self.total, "ratio": self.ratio}


def plan(
    *,
    frames: int,
    scratch_epochs: float,
    video: str | float = "k400",
    image: str | float = "imagenet",
    finetune_epochs: float = 50,
    setting: str = "fixed",
    pretrain_epochs: float | None = None,
    round_to: int = 50,
) -> BudgetRow:
    """Plan one row.

    ``setting="fixed"``: pre-training epochs that fill the from-scratch budget left after fine-tuning, rounded up to a
    multiple of ``round_to`` (the paper's 100 / 150 / 300); ``setting="sota"``: 300 epochs. ``pretrain_epochs``
    overrides either.
    """
    if frames < 1 or scratch_epochs <= 0 or finetune_epochs < 0:
        raise VidpriorError("frames, scratch_epochs must be positive and finetune_epochs >= 0")
    scratch = images_seen_video(scratch_epochs, frames, video)
    finetune = images_seen_video(finetune_epochs, frames, video)
    if pretrain_epochs is None:
        if setting == "fixed":
            exact = max(scratch - finetune, 0.0) / _size(image)
            pretrain_epochs = math.ceil(exact / round_to - 1e-9) * round_to if round_to else exact
        elif setting == "sota":
            pretrain_epochs = 300
        else:
            raise VidpriorError(f"setting={setting!r}: expected 'fixed' or 'sota'")
    return BudgetRow(
        setting,
        frames,
        scratch_epochs,
        scratch,
        pretrain_epochs,
        images_seen_pretrain(pretrain_epochs, image),
        finetune_epochs,
        finetune,
    )


def format_table(rows: list[BudgetRow]) -> str:
    head = (
        "| setting | frames | scratch (epochs / images) | pre-train (epochs / images) "
        "| fine-tune (epochs / images) | total | budget |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r.setting} | {r.frames} | {r.scratch_epochs:g} / {r.scratch_images / 1e6:.0f}M | "
            f"{r.pretrain_epochs:g} / {r.pretrain_images / 1e6:.0f}M | {r.finetune_epochs:g} / "
            f"{r.finetune_images / 1e6:.0f}M | {r.total / 1e6:.0f}M | x{truncate(r.ratio):.2f} |"
        )
    return "\n".join(lines)


def draw(rows: list[BudgetRow], path: str | Path, *, title: str = "Training budget (images seen)") -> Path:
    """The paper's Fig. 3: per frame count, pre-train + fine-tune stacked bars beside the from-scratch bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted({r.setting for r in rows}, key=["fixed", "sota"].index)
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        sub = [r for r in rows if r.setting == setting]
        x = range(len(sub))
        ax.bar([i - 0.2 for i in x], [r.pretrain_images / 1e6 for r in sub], 0.4, label="pre-train", color="#4c72b0")
        ax.bar(
            [i - 0.2 for i in x],
            [r.finetune_images / 1e6 for r in sub],
            0.4,
            bottom=[r.pretrain_images / 1e6 for r in sub],
            label="fine-tune",
            color="#e5c34b",
        )
        ax.bar([i + 0.2 for i in x], [r.scratch_images / 1e6 for r in sub], 0.4, label="from scratch", color="#dd8452")
        for i, r in zip(x, sub, strict=True):
            ax.text(i - 0.2, r.total / 1e6, f"x{truncate(r.ratio):.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(x), [f"{r.frames} frames" for r in sub])
        ax.set_ylabel("images seen (millions)")
        ax.set_title("fixed budget" if setting == "fixed" else "train for state of the art")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
