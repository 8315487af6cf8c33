"""The package as a user installs it: a non-editable install (``pip install --no-deps --target``) of a copy of the
sources, run from an unrelated working directory, finds its packaged recipes and runs the documented commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._util import write_color_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_non_editable_install_runs_from_any_directory(tmp_path):
    src, target, work = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vidprior", src / "vidprior", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    res = subprocess.run([*pip, "--target", str(target), str(src)], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (target / "vidprior" / "configs" / "finetune" / "k400" / "slowonly50.yaml").is_file()  # package data
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def vidprior(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "vidprior", *args]
        return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=240, env=env)

    where = subprocess.run(
        [sys.executable, "-c", "import vidprior; print(vidprior.__file__)"], cwd=work, capture_output=True, text=True,
        env=env,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    res = vidprior("quickstart", "--help")
    assert res.returncode == 0 and "--time-budget" in res.stdout, res.stderr[-2000:]
    # the documented fine-tuning command; data and the image checkpoint are the user's, given as overrides
    (work / "videos").mkdir()
    for k in range(2):
        write_color_video(work / "videos" / f"v{k}.mp4", k)
    (work / "train.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    (work / "image.safetensors").write_bytes(b"")
    res = vidprior(
        "finetune", "-c", "configs/finetune/k400/slowonly50.yaml", "--dry-run", "data.train=train.txt",
        "data.val=null", "data.root=videos", "init.checkpoint=image.safetensors", "data.workers=0", "out=run",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "dry run ok" in res.stdout and (work / "run" / "config.yaml").is_file()
    assert "slowonly50" in (work / "run" / "config.yaml").read_text()
