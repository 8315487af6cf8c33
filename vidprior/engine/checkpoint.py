"""Checkpoints that are never half-written and never run code when read (reliability.md §4.2, §4.7).

A checkpoint is a folder ``<run>/checkpoints/step_00001234/`` holding

* ``state.pt`` — model, optimizer, scheduler, scaler, EMA, RNG and sampler state, config and environment, saved with
  ``torch.save`` and read back with ``weights_only=True`` (tensors, containers and plain values only);
* ``model.safetensors`` — the model weights alone, for export;
* ``MANIFEST.json`` — size and SHA-256 of every file: the commit marker, written last.

It is written as ``step_00001234.tmp/`` (every file fsynced), then renamed in one step and the parent folder fsynced,
so a crash at any moment leaves either the complete checkpoint or a ``.tmp`` folder that is ignored and cleaned up.
Older checkpoints beyond ``keep_last`` are deleted only after the new one is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidprior.errors import VidpriorError

MANIFEST = "MANIFEST.json"
STATE = "state.pt"
WEIGHTS = "model.safetensors"
_NAME = re.compile(r"^step_(\d{8,})$")


class CheckpointError(VidpriorError):
    """A checkpoint is missing, incomplete, corrupt, or would need code to load."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    state: dict[str, Any],
    *,
    model_state: dict[str, torch.Tensor] | None = None,
    keep_last: int = 3,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``state`` (and the model weights as safetensors, with ``metadata``) atomically as checkpoint ``step``;
    prune old ones."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(state, tmp / STATE)
    files = [STATE]
    if model_state is not None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={**(metadata or {}), "step": str(step)})
        files.append(WEIGHTS)
    for name in files:
        _fsync_file(tmp / name)
    manifest = {
        "step": step,
        "time": time.time(),
        "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in files},
    }
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it atomically enough
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    prune(run_dir, keep_last)
    return final


def verify(path: str | Path) -> dict[str, Any]:
    """Check a checkpoint folder against its manifest; return the manifest or raise :class:`CheckpointError`."""
    p = Path(path)
    mf = p / MANIFEST
    if not mf.is_file():
        raise CheckpointError(f"{p}: no {MANIFEST} (incomplete checkpoint)")
    try:
        manifest = json.loads(mf.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{mf}: unreadable manifest ({e})") from None
    for name, meta in files.items():
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{f}: listed in the manifest but missing")
        if f.stat().st_size != meta["bytes"] or _sha256(f) != meta["sha256"]:
            raise CheckpointError(f"{f}: checksum mismatch (corrupt or partially written)")
    return manifest


def list_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """Committed checkpoints (no ``.tmp``), oldest first (not verified)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = _NAME.match(d.name)
        if m and d.is_dir():
            out.append(CheckpointInfo(d, int(m.group(1))))
    return sorted(out, key=lambda c: c.step)


def find_latest(run_dir: str | Path) -> CheckpointInfo | None:
    """The newest checkpoint that verifies against its manifest (corrupt or incomplete ones are skipped)."""
    for info in reversed(list_checkpoints(run_dir)):
        try:
            verify(info.path)
        except CheckpointError:
            continue
        return info
    return None


def prune(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` committed checkpoints, and stale ``.tmp`` folders."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return
    for d in root.glob("step_*.tmp"):
        shutil.rmtree(d, ignore_errors=True)
    if keep_last > 0:
        for info in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(info.path, ignore_errors=True)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify, then read ``state.pt`` with ``weights_only=True``: a file that would need code refuses to load."""
    p = Path(path)
    verify(p)
    try:
        return torch.load(p / STATE, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{p / STATE}: refused to load: it needs code to be unpickled ({str(e).splitlines()[0]})"
        ) from None
