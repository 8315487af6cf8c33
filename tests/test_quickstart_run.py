"""The quickstart runner, its time budget, its report and the ``vidprior quickstart`` command, on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vidprior.errors import VidpriorError
from vidprior.quickstart.data import Spec
from vidprior.quickstart.results import MODELS, SETTINGS, TASKS, Result, aggregate, compare, paired_gain
from vidprior.quickstart.run import PLANS, Plan, deterministic, run, setting_overrides

TINY = Spec(images_per_digit=8, videos_train=32, videos_val=8, seed=3)  # 2 batches of 16 clips


def test_plans_cover_what_the_docs_promise(tmp_path):
    full = PLANS["full"]
    assert full.seeds >= 3 and set(full.models) == set(MODELS) and set(full.tasks) == set(TASKS)
    assert set(full.settings) == set(SETTINGS)
    default = PLANS["default"]
    assert {"even", "control"} <= set(default.tasks) and {"a", "b"} <= set(default.settings)
    with pytest.raises(VidpriorError, match="unknown or no setting"):
        Plan(models=("slowonly_tiny",), tasks=("even",), settings=("z",), seeds=1)
    # a plan whose setting this vidprior cannot configure fails before building data or training
    bad = Plan(models=("csn_tiny",), tasks=("control",), settings=("a", "b"), seeds=1, finetune_epochs=0)
    with pytest.raises(VidpriorError, match=r"setting \(b\).*optim.epochs=0"):
        run(tmp_path, plan=bad, progress=False)
    assert not (tmp_path / "data").exists()
    extra = setting_overrides("b'", plain=Path("p.safetensors"), sts=None, epochs=2, scratch_epochs=5)
    assert "init.side_taps=random" in extra and "init.checkpoint=p.safetensors" in extra


def test_deterministic_fixes_threads_and_restores_them():
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with deterministic(threads=1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_comparisons_against_hand_computed_spread():
    rows = [
        Result("csn_tiny", "even", s, seed, top1, 0, 0, 0, "")
        for s, seed, top1 in [("a", 0, 40.0), ("a", 1, 44.0), ("b", 0, 60.0), ("b", 1, 58.0)]
    ]
    agg = aggregate(rows)
    c = compare(agg, "csn_tiny", "even", "b", "a")
    # means 59 and 42, sample stds sqrt(2) and sqrt(8): spread 4.24, difference 17 exceeds it
    assert c.diff == pytest.approx(17.0) and c.spread == pytest.approx(2**0.5 + 8**0.5) and c.exceeds
    assert paired_gain(rows, "csn_tiny", "even", "b", "a") == {0: 20.0, 1: 14.0}
    close = compare(
        aggregate([*rows[:2], *(Result(**{**r.__dict__, "top1": r.top1 - 15}) for r in rows[2:])]),
        "csn_tiny",
        "even",
        "b",
        "a",
    )
    assert close.diff == pytest.approx(2.0) and close.exceeds is False
    one = compare(aggregate(rows[::2]), "csn_tiny", "even", "b", "a")
    assert one.exceeds is None and "one seed" in one.verdict()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes on an idle machine; a loaded CI machine may need many more
def test_runner_settings_budget_and_time_budget(tmp_path):
    """The real runner, one model, two tasks, (a)-(d): each setting has its own init and STS, (a) sees as many
    images as (b) (to one scratch epoch), (c)/(d) start from the STS pre-training, and a zero time budget stops
    after the first (seed, model) unit and says so."""
    from PIL import Image

    plan = Plan(
        models=("slowonly_tiny",),
        tasks=("even", "control"),
        settings=("a", "b", "c", "d"),
        seeds=2,
        spec=TINY,
        pretrain_epochs=2,  # the recipe warms up for one epoch
        finetune_epochs=1,
    )
    summary = run(tmp_path, plan=plan, time_budget_min=0.0, progress=False)
    report = tmp_path / "report"
    saved = json.loads((report / "results.json").read_text())
    assert saved["table"] == summary["table"] and saved["seeds"] == [0]
    assert saved["skipped_units"] == ["seed1/slowonly_tiny"]
    assert set(saved["table"]) == {f"slowonly_tiny/{t}/{s}" for t in ("even", "control") for s in "abcd"}
    rows = {(r["task"], r["setting"]): r for r in saved["results"]}
    pre, pre_sts = rows[("images", "pretrain")], rows[("images", "pretrain_sts")]
    epoch_images = TINY.videos_train * 8
    for task in ("even", "control"):
        a, b = rows[(task, "a")], rows[(task, "b")]
        assert abs(a["images_seen"] - b["images_seen"]) <= epoch_images / 2 + 1
        assert a["images_seen"] > b["images_seen"] - pre["images_seen"]
        assert all(0.0 <= rows[(task, s)]["top1"] <= 100.0 and rows[(task, s)]["cpu_seconds"] > 0 for s in "abcd")
        cfgs = {s: yaml.safe_load((Path(rows[(task, s)]["run_dir"]) / "config.yaml").read_text()) for s in "abcd"}
        assert cfgs["a"]["init"]["source"] == "scratch" and not cfgs["a"]["model"]["sts"]
        assert cfgs["b"]["init"]["mode"] == "center" and not cfgs["b"]["model"]["sts"]
        assert cfgs["c"]["init"]["mode"] == "center" and cfgs["c"]["model"]["sts"]
        assert cfgs["d"]["init"]["mode"] == "mean" and cfgs["d"]["model"]["sts"]
        assert cfgs["b"]["init"]["checkpoint"] == str(Path(pre["run_dir"]) / "best.safetensors")
        assert cfgs["c"]["init"]["checkpoint"] == cfgs["d"]["init"]["checkpoint"]
        assert cfgs["c"]["init"]["checkpoint"] == str(Path(pre_sts["run_dir"]) / "best.safetensors")
        assert all(c["model"]["overrides"]["spatial_strides"] == [1, 1, 1, 1] for c in cfgs.values())
        assert cfgs["a"]["data"]["train"].endswith("control_train.json" if task == "control" else "/train.json")
    assert yaml.safe_load((Path(pre_sts["run_dir"]) / "config.yaml").read_text())["model"]["sts"]
    md = (report / "report.md").read_text()
    assert "| SlowOnly-style (3x1x1) | even digit's direction (SS-V2-like) |" in md and "## Comparisons" in md
    assert "left out: seed1/slowonly_tiny" in md and "(b) − (a)" in md and "one seed, spread unknown" in md
    for png in ("accuracy.png", "budget.png", "curves.png"):
        with Image.open(report / png) as im:
            assert im.format == "PNG" and im.size[0] > 200


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_command_runs_and_prints_its_time(tmp_path):
    """``vidprior quickstart --smoke`` as a user runs it, in a subprocess from another directory."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "qs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidprior",
            "quickstart",
            "--smoke",
            "--out",
            str(out),
            "--seeds",
            "2",
            "--time-budget",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| SlowOnly-style (3x1x1) | even digit's direction (SS-V2-like) |" in proc.stdout
    assert "wall time" in proc.stdout and "seeds [0]" in proc.stdout
    saved = json.loads((out / "report" / "results.json").read_text())
    assert saved["skipped_units"] == ["seed1/slowonly_tiny"] and saved["plan"]["spec"]["videos_train"] == 32
    bad = subprocess.run(
        [sys.executable, "-m", "vidprior", "quickstart", "--smoke", "--full"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not allowed with" in bad.stderr
