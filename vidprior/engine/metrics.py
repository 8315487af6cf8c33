"""Classification metrics: top-k accuracy, mean class accuracy, confusion matrix (and its picture)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def topk_correct(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the top-k scores, for each k (k capped at the class count)."""
    maxk = min(max(ks), scores.shape[1])
    top = scores.topk(maxk, dim=1).indices  # (N, maxk)
    hit = top == labels.view(-1, 1)
    return {k: int(hit[:, : min(k, maxk)].any(dim=1).sum()) for k in ks}


def confusion_matrix(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class."""
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def mean_class_accuracy(cm: Tensor) -> float:
    """Average over classes that occur of (correct / occurrences)."""
    support = cm.sum(dim=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((cm.diag()[present].float() / support[present].float()).mean())


def draw_confusion(cm: Tensor, path: str | Path, class_names: list[str] | None = None, max_classes: int = 60) -> Path:
    """Row-normalised confusion matrix as a PNG (the most frequent ``max_classes`` classes when there are more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = cm.float()
    keep = cm.sum(1).argsort(descending=True)[:max_classes].sort().values
    sub = cm[keep][:, keep]
    norm = sub / sub.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.18 * len(keep) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if class_names is not None and len(keep) <= 40:
        names = [class_names[i] if i < len(class_names) else str(i) for i in keep.tolist()]
        ax.set_xticks(range(len(keep)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(keep)), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
