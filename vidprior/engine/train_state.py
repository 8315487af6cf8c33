"""What a training run must carry across a restart besides the weights: its position and counters
(:class:`TrainState`) and the state of every random number generator (:func:`rng_state` / :func:`set_rng_state`).

Both go into every checkpoint, so a run resumed with ``--resume auto`` draws the same augmentations, dropout masks
and mixup pairs as an uninterrupted one.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidprior.engine.config import RunCfg, to_dict
from vidprior.errors import VidpriorError


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    step: int = 0  # optimizer steps taken (skipped non-finite steps included)
    best_top1: float = -1.0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    images_seen: float = 0.0
    macs_processed: float = 0.0
    wall_time: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def count_batch(self, *, samples: int, frames: int, macs_per_sample: float, wall_time: float) -> None:
        """Budget accounting of one global batch of ``samples`` (all processes): images seen (pre-training: images;
        fine-tuning: clips x frames), multiply-adds processed (forward + backward = 3 forwards) and wall time."""
        self.batch_in_epoch += 1
        self.images_seen += samples * frames
        self.macs_processed += 3 * macs_per_sample * samples
        self.wall_time = wall_time

    def budget(self) -> dict[str, float]:
        return {"images_seen": self.images_seen, "macs": self.macs_processed, "wall_time": self.wall_time}


def auto_resume_point(run_dir: str | Path, *, allow_restart: bool = False) -> Path | None:
    """``--resume auto``: the newest checkpoint of ``run_dir`` that verifies; None when there is none at all (a new
    run). When checkpoints exist but every one is damaged, a :class:`~vidprior.errors.VidpriorError` lists them with
    the reason, since starting over silently would throw the run away; ``allow_restart`` starts over instead
    (saying so on stderr)."""
    from vidprior.engine import checkpoint as ckpt

    info = ckpt.find_latest(run_dir)
    if info is not None:
        return info.path
    report = ckpt.damaged_report(run_dir)  # "every checkpoint in ... is damaged (N): step_...: reason; ..."
    if report is None:
        return None
    if allow_restart:
        print(f"--resume auto: {report}; starting over (--allow-restart)", file=sys.stderr)
        return None
    raise VidpriorError(
        f"--resume auto: {report}. Resume from a copy of a good one (--resume PATH), or pass --allow-restart to "
        "start over"
    )


def rng_state() -> dict[str, Any]:
    """torch, CUDA (when present), NumPy and Python generator states, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# keys of the config that may differ on resume without changing what the run computes
RESUME_SAFE_KEYS = {"out", "train.max_steps", "data.workers", "train.ckpt_every_steps", "train.ckpt_every_minutes"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ (a key the saved config lacks, added to vidprior since, counts as its default)."""
    a, b = _flatten(saved), _flatten(current)
    defaults = _flatten(to_dict(RunCfg()))
    return sorted(k for k in set(a) | set(b) if a.get(k, defaults.get(k)) != b.get(k) and k not in RESUME_SAFE_KEYS)


def format_summary(summary: dict[str, Any]) -> str:
    rows = [
        ("epochs", summary["epochs_done"]),
        ("optimizer steps", summary["steps"]),
        ("best top-1 (%)", "-" if summary["best_top1"] is None else f"{summary['best_top1']:.2f}"),
        ("images seen", f"{summary['images_seen'] / 1e6:.3f}M"),
        ("multiply-adds processed", f"{summary['macs_processed'] / 1e12:.3f} T"),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("device-hours", f"{summary['device_hours']:.4f}"),
        ("skipped non-finite steps", summary["nonfinite_steps"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


__all__ = [
    "TrainState",
    "auto_resume_point",
    "config_differences",
    "format_summary",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]
