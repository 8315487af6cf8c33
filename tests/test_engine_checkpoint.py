"""Checkpoints: atomic commit, manifest verification, pruning after commit, safe loading."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from vidprior.engine.checkpoint import (
    CheckpointError,
    find_latest,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    verify,
)


def _state(step: int) -> dict:
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        "config": {"lr": 0.1, "name": "x"},
    }


def test_round_trip_and_safetensors_export(tmp_path):
    state = _state(5)
    path = save_checkpoint(tmp_path, 5, state, model_state=state["model"])
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (3, 4)
    assert loaded["rng"]["python"] == state["rng"]["python"]
    weights = load_file(str(path / "model.safetensors"))
    assert torch.equal(weights["bias"], state["model"]["bias"])


def test_keep_last_and_latest(tmp_path):
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, _state(step), keep_last=2)
    assert [c.step for c in list_checkpoints(tmp_path)] == [30, 40]
    assert find_latest(tmp_path).step == 40


def test_incomplete_and_corrupt_checkpoints_are_skipped(tmp_path):
    save_checkpoint(tmp_path, 10, _state(10), keep_last=5)
    newest = save_checkpoint(tmp_path, 20, _state(20), keep_last=5)
    # a crash during the next save leaves a .tmp folder: ignored
    (tmp_path / "checkpoints" / "step_00000030.tmp").mkdir()
    assert find_latest(tmp_path).step == 20
    # a flipped byte in the newest: checksum mismatch, fall back to the previous one
    data = bytearray((newest / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / "state.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        verify(newest)
    assert find_latest(tmp_path).step == 10
    # a manifest-less folder (renamed by hand) is not a checkpoint
    (tmp_path / "checkpoints" / "step_00000099").mkdir()
    assert find_latest(tmp_path).step == 10
    # the next successful save removes stale .tmp folders
    save_checkpoint(tmp_path, 40, _state(40), keep_last=5)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


class _Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_crafted_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = save_checkpoint(tmp_path, 1, {"x": torch.zeros(1)})
    torch.save({"x": _Evil()}, path / "state.pt")
    manifest = json.loads((path / "MANIFEST.json").read_text())  # make the manifest agree: only pickle safety left
    import hashlib

    manifest["files"]["state.pt"] = {
        "bytes": (path / "state.pt").stat().st_size,
        "sha256": hashlib.sha256((path / "state.pt").read_bytes()).hexdigest(),
    }
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()
