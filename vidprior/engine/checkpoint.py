"""Checkpoints that are never half-written and never run code when read (docs/reliability/, "Checkpoints").

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

import contextlib
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
from safetensors import SafetensorError

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
    """A committed checkpoint folder; ``valid`` / ``problem`` are set by :func:`list_checkpoints` ``(check=True)``."""

    path: Path
    step: int
    valid: bool | None = None
    problem: str | None = None


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
    prune old ones.

    A failed write (disk full, file-size limit, I/O error) removes the partial ``.tmp`` folder, leaves every earlier
    checkpoint untouched and raises :class:`CheckpointError` naming the folder and the cause: never a silent success.
    """
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_files(tmp, step, state, model_state, metadata)
        if final.exists():  # re-saving the same step (e.g. after a resume): move the old one aside, then replace
            old = root / f"step_{step:08d}.old.tmp"  # a ``.tmp`` name: cleaned up by the next prune
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(root)
    except (OSError, RuntimeError, SafetensorError) as e:  # torch.save reports a failed write as RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        prev = find_latest(run_dir)
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        with contextlib.suppress(OSError):  # torch.save's message does not say why a write failed: show the room left
            cause += f"; {shutil.disk_usage(root).free / 2**20:.0f} MiB free there"
        raise CheckpointError(
            f"{root}: could not save checkpoint step {step} ({cause}); "
            + (f"the previous checkpoint {prev.path.name} is intact" if prev else "no earlier checkpoint exists")
            + ". Free disk space (or raise the file-size limit) and resume with --resume auto"
        ) from None
    prune(run_dir, keep_last)
    return final


def _write_files(
    tmp: Path,
    step: int,
    state: dict[str, Any],
    model_state: dict[str, torch.Tensor] | None,
    metadata: dict[str, str] | None,
) -> None:
    """Write and fsync the payload files and, last, the manifest (the commit marker) into ``tmp``."""
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


def verify(path: str | Path) -> dict[str, Any]:
    """Check a checkpoint folder against its manifest; return the manifest or raise :class:`CheckpointError`."""
    p = Path(path)
    mf = p / MANIFEST
    if not mf.is_file():
        raise CheckpointError(f"{p}: no {MANIFEST} (incomplete checkpoint)")
    try:
        manifest = json.loads(mf.read_text())
        files = manifest["files"]
        expected = {name: (int(meta["bytes"]), str(meta["sha256"])) for name, meta in files.items()}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{mf}: unreadable manifest ({type(e).__name__}: {e})") from None
    if STATE not in expected:
        raise CheckpointError(f"{mf}: the manifest does not list {STATE}")
    for name, (size, digest) in expected.items():
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{f}: listed in the manifest but missing")
        try:
            ok = f.stat().st_size == size and _sha256(f) == digest
        except OSError as e:
            raise CheckpointError(f"{f}: unreadable ({e})") from None
        if not ok:
            raise CheckpointError(f"{f}: checksum mismatch (corrupt or partially written)")
    return manifest


def list_checkpoints(run_dir: str | Path, *, check: bool = False) -> list[CheckpointInfo]:
    """Committed checkpoints (no ``.tmp``), oldest first.

    With ``check=True`` each one is verified against its manifest: ``info.valid`` and ``info.problem`` (why it is
    damaged) are filled in; otherwise ``info.valid`` is ``None`` (not checked).
    """
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = _NAME.match(d.name)
        if m and d.is_dir():
            out.append(CheckpointInfo(d, int(m.group(1))))
    out.sort(key=lambda c: c.step)
    if check:
        out = [_checked(info) for info in out]
    return out


def _checked(info: CheckpointInfo) -> CheckpointInfo:
    try:
        verify(info.path)
    except CheckpointError as e:
        return CheckpointInfo(info.path, info.step, valid=False, problem=str(e))
    return CheckpointInfo(info.path, info.step, valid=True)


def find_latest(run_dir: str | Path) -> CheckpointInfo | None:
    """The newest checkpoint that verifies against its manifest (corrupt or incomplete ones are skipped)."""
    for info in reversed(list_checkpoints(run_dir)):
        info = _checked(info)
        if info.valid:
            return info
    return None


def damaged_report(run_dir: str | Path) -> str | None:
    """``None`` if the run folder has a valid checkpoint or none at all; otherwise a one-line message listing every
    damaged checkpoint with its reason (for ``--resume auto`` to refuse to start over silently)."""
    infos = list_checkpoints(run_dir, check=True)
    if not infos or any(i.valid for i in infos):
        return None
    reasons = "; ".join(f"{i.path.name}: {i.problem}" for i in reversed(infos))
    return f"every checkpoint in {checkpoint_dir(run_dir)} is damaged ({len(infos)}): {reasons}"


def prune(run_dir: str | Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` VALID checkpoints; delete older ones and stale ``.tmp`` folders.

    Every checkpoint is verified first: a damaged one never counts toward ``keep_last``, so the newest valid
    checkpoint is never deleted however many damaged ones have higher step numbers. A damaged checkpoint older
    than the oldest kept valid one is deleted (it can never be resumed); newer damaged ones are left for inspection.
    """
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return
    for d in root.glob("step_*.tmp"):
        shutil.rmtree(d, ignore_errors=True)
    if keep_last <= 0:
        return
    infos = list_checkpoints(run_dir, check=True)
    valid = [i for i in infos if i.valid]
    if not valid:
        return
    kept = valid[-keep_last:]
    oldest_kept = kept[0].step
    for info in infos:
        if info.step < oldest_kept:
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


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) as a safetensors file, atomically: a reader sees the old
    file or the new one, never a partial one (written to ``<path>.tmp``, fsynced, then renamed)."""
    from safetensors.torch import save_file

    final = Path(path)
    tmp = final.with_name(final.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    _fsync_file(tmp)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return final
