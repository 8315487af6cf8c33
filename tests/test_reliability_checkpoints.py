"""Damaged checkpoints and a disk that fills up during a save (issue 9, item 3 and "disk full").

Faults are real: bytes flipped or files truncated on disk, and a child process whose file-size limit
(``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored so the write fails with ``EFBIG`` like on a full disk) cuts the write.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vidprior.engine.checkpoint import (
    CheckpointError,
    damaged_report,
    find_latest,
    list_checkpoints,
    load_checkpoint,
    prune,
    save_checkpoint,
    verify,
)


def _state(step: int, size: int = 8) -> dict:
    return {"step": step, "w": torch.full((size,), float(step))}


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage(ckpt: Path, how: str) -> None:
    if how == "flip":
        _flip_byte(ckpt / "state.pt")
    elif how == "truncate":
        (ckpt / "state.pt").write_bytes((ckpt / "state.pt").read_bytes()[:10])
    elif how == "no_manifest":
        (ckpt / "MANIFEST.json").unlink()
    elif how == "bad_manifest":
        (ckpt / "MANIFEST.json").write_text("{not json")
    elif how == "missing_file":
        (ckpt / "state.pt").unlink()
    elif how == "manifest_without_state":
        (ckpt / "MANIFEST.json").write_text(json.dumps({"step": 1, "files": {}}))
    elif how == "manifest_bad_entry":
        (ckpt / "MANIFEST.json").write_text(json.dumps({"step": 1, "files": {"state.pt": {"bytes": "x"}}}))
    else:
        raise AssertionError(how)


DAMAGES = ["flip", "truncate", "no_manifest", "bad_manifest", "missing_file", "manifest_without_state"]


@pytest.mark.parametrize("how", [*DAMAGES, "manifest_bad_entry"])
def test_every_kind_of_damage_is_a_checkpoint_error_with_the_path(tmp_path, how):
    path = save_checkpoint(tmp_path, 1, _state(1))
    verify(path)
    _damage(path, how)
    with pytest.raises(CheckpointError, match="step_00000001"):
        verify(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert find_latest(tmp_path) is None


def test_newer_damaged_checkpoints_never_push_out_the_newest_valid_one(tmp_path):
    """The issue's scenario: steps 6, 9, 12 damaged, the run starts over and saves step 3 with keep_last=3."""
    for step in (6, 9, 12):
        save_checkpoint(tmp_path, step, _state(step), keep_last=10)
    for step in (6, 9, 12):
        _damage(tmp_path / "checkpoints" / f"step_{step:08d}", "flip")
    assert find_latest(tmp_path) is None
    save_checkpoint(tmp_path, 3, _state(3), keep_last=3)
    assert find_latest(tmp_path).step == 3
    assert 3 in [c.step for c in list_checkpoints(tmp_path)]
    assert load_checkpoint(find_latest(tmp_path).path)["step"] == 3
    # the run goes on: step 6 replaces the damaged step 6, and the valid ones are kept up to keep_last
    save_checkpoint(tmp_path, 6, _state(6), keep_last=3)
    infos = list_checkpoints(tmp_path, check=True)
    assert [(c.step, c.valid) for c in infos] == [(3, True), (6, True), (9, False), (12, False)]
    assert find_latest(tmp_path).step == 6


def test_damaged_checkpoints_do_not_count_toward_keep_last(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, _state(step), keep_last=10)
    _damage(tmp_path / "checkpoints" / "step_00000004", "truncate")
    _damage(tmp_path / "checkpoints" / "step_00000002", "no_manifest")
    prune(tmp_path, keep_last=2)
    infos = list_checkpoints(tmp_path, check=True)
    # the two newest VALID are 3 and 1: both kept; the damaged 2 sits between them and is kept too, the damaged 4
    # (newer than every valid one) is left for inspection
    assert [(c.step, c.valid) for c in infos] == [(1, True), (2, False), (3, True), (4, False)]
    prune(tmp_path, keep_last=1)
    assert [(c.step, c.valid) for c in list_checkpoints(tmp_path, check=True)] == [(3, True), (4, False)]
    assert find_latest(tmp_path).step == 3


def test_keep_last_counts_exactly(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, _state(step), keep_last=3)
        assert [c.step for c in list_checkpoints(tmp_path)] == list(range(max(1, step - 2), step + 1))
    prune(tmp_path, keep_last=0)  # 0: keep everything
    assert len(list_checkpoints(tmp_path)) == 3


def test_list_checkpoints_reports_validity_and_reason(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, _state(step), keep_last=10)
    _damage(tmp_path / "checkpoints" / "step_00000003", "flip")
    assert all(c.valid is None for c in list_checkpoints(tmp_path))  # not checked unless asked
    infos = list_checkpoints(tmp_path, check=True)
    assert [c.valid for c in infos] == [True, True, False]
    assert infos[0].problem is None and "checksum mismatch" in infos[2].problem
    assert damaged_report(tmp_path) is None  # a valid one exists


def test_damaged_report_lists_every_checkpoint_with_its_reason(tmp_path):
    assert damaged_report(tmp_path) is None  # no checkpoints at all: nothing to report
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, _state(step), keep_last=10)
    for step, how in ((1, "flip"), (2, "no_manifest"), (3, "missing_file")):
        _damage(tmp_path / "checkpoints" / f"step_{step:08d}", how)
    msg = damaged_report(tmp_path)
    assert msg is not None and "\n" not in msg
    assert "every checkpoint" in msg and str(tmp_path / "checkpoints") in msg
    assert "step_00000001" in msg and "checksum mismatch" in msg
    assert "step_00000002" in msg and "no MANIFEST.json" in msg
    assert "step_00000003" in msg and "missing" in msg
    assert msg.index("step_00000003") < msg.index("step_00000001")  # newest first
    root = tmp_path / "checkpoints"
    assert msg.startswith(f"every checkpoint in {root} is damaged (3): step_00000003: {root / 'step_00000003'}")
    assert f"; step_00000002: {root / 'step_00000002'}: no MANIFEST.json" in msg
    assert f"; step_00000001: {root / 'step_00000001' / 'state.pt'}: checksum mismatch" in msg


def test_resaving_the_same_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 5, _state(5), keep_last=3)
    save_checkpoint(tmp_path, 5, {"step": 5, "w": torch.zeros(3)}, keep_last=3)
    assert torch.equal(load_checkpoint(find_latest(tmp_path).path)["w"], torch.zeros(3))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000005"]


# ------------------------------------------------------------------------------------------------ disk full
_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import torch
    from vidprior.engine.checkpoint import CheckpointError, save_checkpoint

    run_dir, limit, numel, where = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    big = torch.ones(numel)
    try:
        if where == "state":  # the big tensor is in state.pt
            path = save_checkpoint(run_dir, 2, {"step": 2, "w": big})
        else:  # state.pt is small, the weights file is what no longer fits
            path = save_checkpoint(run_dir, 2, {"step": 2}, model_state={"w": big})
    except CheckpointError as e:
        print(json.dumps({"error": str(e), "type": type(e).__name__}))
    else:
        print(json.dumps({"saved": str(path)}))
    """
)


def _save_under_limit(run_dir: Path, limit: int, numel: int, where: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(run_dir), str(limit), str(numel), where],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("where", ["state", "weights"])  # torch.save fails, or safetensors does
def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, where):
    save_checkpoint(tmp_path, 1, _state(1), keep_last=1)
    numel = 200_000  # 800 kB of float32 against a 100 kB file-size limit
    out = _save_under_limit(tmp_path, 100_000, numel, where)
    assert out.get("type") == "CheckpointError", out
    msg = out["error"]
    assert str(tmp_path / "checkpoints") in msg and "step 2" in msg
    assert "File too large" in msg or "file" in msg.lower(), msg
    assert "step_00000001 is intact" in msg
    # the previous checkpoint is still valid and the newest; no partial folder is left behind
    assert find_latest(tmp_path).step == 1
    assert load_checkpoint(find_latest(tmp_path).path)["step"] == 1
    assert [c.step for c in list_checkpoints(tmp_path)] == [1]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    # and once there is room again the same save succeeds
    save_checkpoint(tmp_path, 2, {"step": 2, "w": torch.ones(numel)}, keep_last=1)
    assert find_latest(tmp_path).step == 2


def test_disk_full_on_the_first_save_says_there_is_no_earlier_checkpoint(tmp_path):
    import re

    out = _save_under_limit(tmp_path, 100_000, 200_000, "state")
    assert out.get("type") == "CheckpointError", out
    pattern = (
        rf"^{re.escape(str(tmp_path / 'checkpoints'))}: could not save checkpoint step 2 "
        r"\((.+); \d+ MiB free there\); no earlier checkpoint exists\. "
        r"Free disk space \(or raise the file-size limit\) and resume with --resume auto$"
    )
    match = re.match(pattern, out["error"])
    assert match, out["error"]
    cause = match.group(1)
    assert " " in cause and cause not in ("None", "RuntimeError")  # torch's own first line, not a bare class name
    assert find_latest(tmp_path) is None and not list((tmp_path / "checkpoints").glob("*.tmp"))
    save_checkpoint(tmp_path, 2, _state(2))  # with room again it saves (in this process too)
    assert find_latest(tmp_path).step == 2


# ------------------------------------------------------------------------------------------------ what is written
def test_manifest_and_weights_record_the_step_sizes_and_hashes(tmp_path):
    import hashlib
    import time

    from safetensors import safe_open

    before = time.time()
    state = _state(7, size=1000)
    path = save_checkpoint(tmp_path, 7, state, model_state={"w": state["w"]})
    after = time.time()
    assert path == tmp_path / "checkpoints" / "step_00000007"
    manifest = verify(path)
    assert manifest["step"] == 7 and before <= manifest["time"] <= after
    assert sorted(manifest["files"]) == ["model.safetensors", "state.pt"]
    for name, meta in manifest["files"].items():
        data = (path / name).read_bytes()
        assert meta == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"step": "7"} and torch.equal(f.get_tensor("w"), state["w"])
    tagged = save_checkpoint(tmp_path, 8, state, model_state={"w": state["w"]}, metadata={"model": "x3d_s"})
    with safe_open(str(tagged / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"model": "x3d_s", "step": "8"}  # the caller's metadata travels with the weights
    assert sorted(p.name for p in path.iterdir()) == ["MANIFEST.json", "model.safetensors", "state.pt"]
    assert json.loads((path / "MANIFEST.json").read_text()) == manifest


def test_verify_messages_say_what_is_wrong(tmp_path):
    path = save_checkpoint(tmp_path, 1, _state(1))
    manifest = (path / "MANIFEST.json").read_text()
    cases = {
        "bad_manifest": f"{path / 'MANIFEST.json'}: unreadable manifest (JSONDecodeError",
        "manifest_without_state": f"{path / 'MANIFEST.json'}: the manifest does not list state.pt",
        "manifest_bad_entry": f"{path / 'MANIFEST.json'}: unreadable manifest (ValueError",
        "missing_file": f"{path / 'state.pt'}: listed in the manifest but missing",
        "no_manifest": f"{path}: no MANIFEST.json (incomplete checkpoint)",
        "flip": f"{path / 'state.pt'}: checksum mismatch (corrupt or partially written)",
    }
    state_bytes = (path / "state.pt").read_bytes()
    for how, expected in cases.items():
        _damage(path, how)
        with pytest.raises(CheckpointError) as info:
            verify(path)
        assert str(info.value).startswith(expected), (how, str(info.value))
        (path / "MANIFEST.json").write_text(manifest)  # repair for the next case
        (path / "state.pt").write_bytes(state_bytes)
        verify(path)


def test_load_checkpoint_maps_to_the_requested_device(tmp_path):
    path = save_checkpoint(tmp_path, 1, _state(1))
    assert load_checkpoint(path)["w"].device.type == "cpu"
    assert load_checkpoint(path, map_location="meta")["w"].device.type == "meta"


_EVIL_LOAD = textwrap.dedent(
    """
    import hashlib, json, pathlib, sys
    import torch
    from vidprior.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(sys.argv[1]) / "PWNED",))

    path = save_checkpoint(sys.argv[1], 1, {"x": torch.zeros(1)})
    torch.save({"x": Evil()}, path / "state.pt")
    manifest = json.loads((path / "MANIFEST.json").read_text())  # the manifest agrees: only pickle safety is left
    data = (path / "state.pt").read_bytes()
    manifest["files"]["state.pt"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    try:
        load_checkpoint(path)
    except CheckpointError as e:
        print(str(e))
    """
)


def test_a_crafted_pickle_is_refused_even_when_torch_is_told_to_unpickle_anything(tmp_path):
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (set for some old tool) turns torch.load's default to full unpickling;
    the checkpoint reader asks for weights only explicitly, so a crafted state.pt still runs no code."""
    import os

    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _EVIL_LOAD, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()
    msg = res.stdout.strip()
    assert msg.startswith(f"{tmp_path / 'checkpoints' / 'step_00000001' / 'state.pt'}: refused to load: it needs code")
    assert "unpickled (Weights only load failed" in msg and "\n" not in msg  # torch's first line only
    with pytest.raises(CheckpointError, match="refused to load"):  # and in this process, without the variable
        load_checkpoint(tmp_path / "checkpoints" / "step_00000001")
    assert not (tmp_path / "PWNED").exists()


def test_save_creates_the_run_folder_and_keeps_three_by_default(tmp_path):
    run = tmp_path / "new" / "run"
    for step in range(1, 6):
        save_checkpoint(run, step, _state(step))
    assert [c.step for c in list_checkpoints(run)] == [3, 4, 5]


def test_leftovers_of_a_crash_in_the_same_step_are_replaced(tmp_path):
    save_checkpoint(tmp_path, 5, _state(5), keep_last=3)
    root = tmp_path / "checkpoints"
    for name in ("step_00000005.tmp", "step_00000005.old.tmp"):  # a crash while re-saving step 5 left both
        (root / name).mkdir()
        (root / name / "junk").write_text("x")
    path = save_checkpoint(tmp_path, 5, {"step": 5, "w": torch.ones(2)}, keep_last=3)
    assert sorted(p.name for p in path.iterdir()) == ["MANIFEST.json", "state.pt"]
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))
    assert sorted(p.name for p in root.iterdir()) == ["step_00000005"]


class _Unpicklable:
    """A state entry torch.save cannot write (e.g. a user's open handle): pickling raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __reduce__(self):
        raise self.error


def test_a_state_that_cannot_be_written_is_reported_with_its_cause_and_the_room_left(tmp_path):
    import re
    import shutil

    save_checkpoint(tmp_path, 1, _state(1))
    root = tmp_path / "checkpoints"
    for error, cause in [(RuntimeError("cannot pickle a socket\nmore detail"), "cannot pickle a socket"),
                         (RuntimeError(), "RuntimeError"), (OSError("  "), "OSError")]:  # fmt: skip
        before = shutil.disk_usage(root).free / 2**20
        with pytest.raises(CheckpointError) as err:
            save_checkpoint(tmp_path, 2, {"step": 2, "handle": _Unpicklable(error)})
        after = shutil.disk_usage(root).free / 2**20
        msg = str(err.value)
        match = re.match(
            rf"^{re.escape(str(root))}: could not save checkpoint step 2 \((.+); (\d+) MiB free there\)", msg
        )
        assert match and match.group(1) == cause, msg  # the first line of the message, or the class when empty
        reported = int(match.group(2))  # measured between `before` and `after` (1 MiB for the rounding)
        assert min(before, after) - 1 <= reported <= max(before, after) + 1, (msg, before, after)
        assert "the previous checkpoint step_00000001 is intact" in msg
    assert [c.step for c in list_checkpoints(tmp_path)] == [1] and not list(root.glob("*.tmp"))


def test_a_run_folder_that_is_a_file_is_a_clear_checkpoint_error(tmp_path):
    not_a_folder = tmp_path / "run"
    not_a_folder.write_text("a file where the run folder should be")
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(not_a_folder, 1, _state(1))
    msg = str(err.value)
    assert msg.startswith(f"{not_a_folder / 'checkpoints'}: could not save checkpoint step 1 (")
    assert "MiB free" not in msg and "no earlier checkpoint exists" in msg
