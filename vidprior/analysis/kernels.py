"""Energy of each temporal slice of the 3D kernels (paper §3.1).

For every convolution whose kernel is longer than 1 along time, the share of each temporal slice ``t`` in the
kernel's energy (squared L2 norm): ``sum(w[:, :, t] ** 2) / sum(w ** 2)`` over all filters. A kernel inflated from
an image model by its centre slice (the paper's zero-init) gives share 1.0 at the centre; a mean-inflated one
1/k per slice. STS layers (vidprior's :class:`~vidprior.layers.STSConv3d`) also report the shares of their static
and dynamic filters apart: the static filters use their side slices along rows and columns, not along time.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from vidprior.errors import VidpriorError


@dataclass
class LayerEnergy:
    name: str
    kernel: tuple[int, ...]  # (T, H, W)
    shares: list[float]  # one per temporal slice, sum 1
    sts: bool = False
    static_shares: list[float] | None = None
    dynamic_shares: list[float] | None = None

    @property
    def centre(self) -> float:
        return self.shares[len(self.shares) // 2]

    @property
    def centre_dominates(self) -> bool:
        c = len(self.shares) // 2
        return all(self.shares[c] > s for i, s in enumerate(self.shares) if i != c)


def slice_shares(weight: torch.Tensor) -> list[float] | None:
    """(O, I, T, H, W) -> the share of each of the T slices in the squared norm (``None`` for an all-zero kernel)."""
    w = weight.detach().double()
    energy = w.pow(2).sum(dim=(0, 1, 3, 4))  # (T,)
    total = float(energy.sum())
    if total == 0.0 or not math.isfinite(total):
        return None
    return [float(e) / total for e in energy]


def kernel_energy(model: nn.Module) -> list[LayerEnergy]:
    """Per conv with a temporal kernel > 1, in module order. Raises if the model has none."""
    from vidprior.layers.sts import STSConv3d

    rows = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv3d) or m.kernel_size[0] < 2:
            continue
        shares = slice_shares(m.weight)
        if shares is None:
            continue
        row = LayerEnergy(name, tuple(m.kernel_size), shares)
        if isinstance(m, STSConv3d) and m.num_static > 0:
            row.sts = True
            row.static_shares = slice_shares(m.weight[: m.num_static])
            row.dynamic_shares = slice_shares(m.weight[m.num_static :]) if m.num_static < m.out_channels else None
        rows.append(row)
    if not rows:
        raise VidpriorError("the model has no convolution with a temporal kernel longer than 1 (nothing to measure)")
    return rows


def summary(rows: list[LayerEnergy]) -> str:
    """One line: in how many layers the centre slice holds more energy than each other slice."""
    n = sum(r.centre_dominates for r in rows)
    mean = sum(r.centre for r in rows) / len(rows)
    verdict = (
        "the centre slice dominates"
        if n == len(rows)
        else (
            "the centre slice dominates in most layers" if n > len(rows) / 2 else "the centre slice does not dominate"
        )
    )
    return f"{verdict}: {n}/{len(rows)} layers, mean centre share {mean:.3f} (uniform would be {1 / 3:.3f} for 3 taps)"


def to_json(rows: list[LayerEnergy], path: str | Path, **meta) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "summary": summary(rows), "layers": [{**asdict(r), "centre": r.centre} for r in rows]}
    p.write_text(json.dumps(payload, indent=2))
    return p


def heatmap(rows: list[LayerEnergy], path: str | Path, title: str = "") -> Path:
    """Layers x temporal slices (aligned at the centre slice; blank where a kernel is shorter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width = max(len(r.shares) for r in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        off = width // 2 - len(r.shares) // 2
        grid[i, off : off + len(r.shares)] = r.shares
    fig, ax = plt.subplots(figsize=(2.0 + 0.6 * width, 1.0 + 0.18 * len(rows)))
    im = ax.imshow(grid, aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(width), [f"{t - width // 2:+d}" if t != width // 2 else "0" for t in range(width)])
    ax.set_xlabel("temporal slice (offset from centre)")
    ax.set_yticks(range(len(rows)), [r.name + (" (STS)" if r.sts else "") for r in rows], fontsize=6)
    fig.colorbar(im, ax=ax, label="share of kernel energy")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
