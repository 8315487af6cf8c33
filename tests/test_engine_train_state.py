"""What a run carries across a restart besides its weights (vidprior.engine.train_state): every random generator's
state (restored exactly, cached Gaussian values included, also after a round trip through a real checkpoint),
seeding, the config keys allowed to change on resume, the choice of the resume point, and the budget counters."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vidprior.engine.checkpoint import load_checkpoint, save_checkpoint
from vidprior.engine.config import RunCfg, to_dict
from vidprior.engine.train_state import (
    RESUME_SAFE_KEYS,
    TrainState,
    auto_resume_point,
    config_differences,
    format_summary,
    rng_state,
    seed_everything,
    set_rng_state,
)
from vidprior.errors import VidpriorError


def _draws() -> tuple:
    """One draw from each generator a training step uses, Gaussian ones included."""
    return (
        torch.rand(4).tolist(),
        torch.randn(3).tolist(),
        np.random.rand(3).tolist(),
        np.random.standard_normal(3).tolist(),  # odd count: the legacy generator caches the spare value
        random.random(),
        random.gauss(0.0, 1.0),  # caches the second value of its pair
    )


@pytest.mark.parametrize("through_checkpoint", [False, True])
def test_restored_generators_repeat_every_draw(tmp_path, through_checkpoint):
    seed_everything(7)
    _draws()  # leave a cached Gaussian in numpy and in Python's generator
    saved = rng_state()
    if through_checkpoint:  # the state as a resumed run sees it: written and read back safely
        path = save_checkpoint(tmp_path, 1, {"rng": saved})
        saved = load_checkpoint(path)["rng"]
    first = _draws()
    _draws()
    set_rng_state(saved)
    assert _draws() == first
    assert saved["numpy"]["keys"].dtype == torch.int64  # plain integer tensors: exact, and loadable weights-only


def test_restoring_does_not_depend_on_the_generators_current_position():
    seed_everything(1)
    saved = rng_state()
    first = _draws()
    seed_everything(2)  # a fresh process seeds differently before resuming
    set_rng_state(saved)
    assert _draws() == first


def test_seed_everything_seeds_all_three_generators_and_takes_large_seeds():
    seed_everything(3)
    a = _draws()
    seed_everything(3)
    assert _draws() == a
    seed_everything(4)
    b = _draws()
    assert all(x != y for x, y in zip(a, b, strict=True))  # torch, numpy and Python each follow the seed
    seed_everything(2**32 + 5)  # above numpy's 32-bit limit: reduced, not refused
    assert (np.random.get_state()[1] == np.random.RandomState(5).get_state()[1]).all()


def test_config_differences_ignore_only_the_resume_safe_keys():
    base = to_dict(RunCfg())
    changed = to_dict(RunCfg())
    changed["out"] = "elsewhere"
    changed["train"]["max_steps"] = 99
    changed["data"]["workers"] = 7
    changed["train"]["ckpt_every_steps"] = 5
    changed["train"]["ckpt_every_minutes"] = 1.5
    assert config_differences(base, changed) == []
    assert {"out", "train.max_steps", "data.workers", "train.ckpt_every_steps", "train.ckpt_every_minutes"} == set(
        RESUME_SAFE_KEYS
    )
    changed["optim"]["lr"] = base["optim"]["lr"] * 2
    changed["model"]["static_ratio"] = "1:2"
    assert config_differences(base, changed) == ["model.static_ratio", "optim.lr"]  # sorted, dotted


def test_config_differences_look_inside_builder_overrides():
    a, b = to_dict(RunCfg()), to_dict(RunCfg())
    a["model"]["overrides"] = {"width": 8, "depth": 2}
    b["model"]["overrides"] = {"width": 16, "depth": 2}
    assert config_differences(a, b) == ["model.overrides.width"]
    b["model"]["overrides"] = {"width": 8}  # an override removed since
    assert config_differences(a, b) == ["model.overrides.depth"]


def test_a_key_the_saved_config_lacks_counts_as_its_default():
    saved, current = to_dict(RunCfg()), to_dict(RunCfg())
    del saved["train"]["label_smoothing"]  # saved by an older vidprior, before the key existed
    assert config_differences(saved, current) == []
    current["train"]["label_smoothing"] = 0.1
    assert config_differences(saved, current) == ["train.label_smoothing"]


def test_a_key_removed_from_the_current_config_is_a_difference():
    saved = to_dict(RunCfg())
    saved["train"]["a_retired_option"] = 3
    assert config_differences(saved, to_dict(RunCfg())) == ["train.a_retired_option"]


def test_resume_point_is_none_for_a_new_run_and_the_newest_valid_checkpoint_otherwise(tmp_path):
    assert auto_resume_point(tmp_path / "new") is None
    save_checkpoint(tmp_path, 3, {"step": 3})
    newest = save_checkpoint(tmp_path, 6, {"step": 6})
    assert auto_resume_point(tmp_path) == newest


def test_every_checkpoint_damaged_refuses_or_restarts_only_when_allowed(tmp_path, capsys):
    paths = [save_checkpoint(tmp_path, step, {"step": step}) for step in (3, 6)]
    for path in paths:
        (path / "state.pt").write_bytes(b"damaged")
    with pytest.raises(VidpriorError) as err:
        auto_resume_point(tmp_path)
    msg = str(err.value)
    assert msg.startswith("--resume auto: every checkpoint in ")
    assert msg.endswith(". Resume from a copy of a good one (--resume PATH), or pass --allow-restart to start over")
    assert "step_00000003" in msg and "step_00000006" in msg and "--allow-restart" in msg and "--resume PATH" in msg
    assert auto_resume_point(tmp_path, allow_restart=True) is None
    err_text = capsys.readouterr().err
    assert "is damaged" in err_text and err_text.rstrip().endswith("starting over (--allow-restart)")


def test_count_batch_accumulates_the_budget():
    s = TrainState()
    s.count_batch(samples=4, frames=8, macs_per_sample=2.0, wall_time=1.5)
    s.count_batch(samples=2, frames=8, macs_per_sample=2.0, wall_time=3.0)
    assert s.batch_in_epoch == 2
    assert s.budget() == {"images_seen": 48.0, "macs": 36.0, "wall_time": 3.0}  # forward + backward = 3 forwards


def test_format_summary_aligns_one_row_per_figure():
    text = format_summary(
        {"epochs_done": 2, "steps": 40, "best_top1": None, "images_seen": 2.5e9, "macs_processed": 3.25e21,
         "wall_time_s": 12.34, "device_hours": 0.00685, "nonfinite_steps": 1}
    )  # fmt: skip
    lines = text.splitlines()
    assert lines == [
        "epochs                    2",
        "optimizer steps           40",
        "best top-1 (%)            -",
        "images seen               2500.000M",
        "multiply-adds processed   3250000000.000 T",
        "wall time                 12.3 s",
        "device-hours              0.0069",
        "skipped non-finite steps  1",
    ]
    assert "best top-1 (%)            61.23" in format_summary(
        {"epochs_done": 0, "steps": 0, "best_top1": 61.234, "images_seen": 0, "macs_processed": 0,
         "wall_time_s": 0, "device_hours": 0, "nonfinite_steps": 0}
    )  # fmt: skip
