"""Metrics a person can plot: JSON lines and TensorBoard in the run folder, PNG curves at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricLogger:
    """Writes ``metrics.jsonl`` (one object per record) and TensorBoard scalars; only the main process writes."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"))

    def log(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": time.time(), **values}
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def draw_curves(run_dir: str | Path) -> Path | None:
    """Loss and learning rate per step, validation accuracy per epoch, from ``metrics.jsonl`` -> ``curves.png``."""
    records = read_metrics(Path(run_dir) / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if train:
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
        axes[0].set_title("training loss")
        axes[1].plot([r["step"] for r in train], [r["lr"] for r in train], lw=1, color="tab:orange")
        axes[1].set_title("learning rate")
    for key in ("top1", "top5"):
        pts = [(r["epoch"], r[key]) for r in val if key in r]
        if pts:
            axes[2].plot(*zip(*pts, strict=True), marker="o", label=key)
    axes[2].set_title("validation accuracy (%)")
    axes[2].legend()
    for ax, xl in zip(axes, ("step", "step", "epoch"), strict=True):
        ax.set_xlabel(xl)
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
