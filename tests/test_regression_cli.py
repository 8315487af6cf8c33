"""The regression net through the real command line (issue 9): resume restores every random state, and
``vidprior test`` averages the views.

Both go through ``python -m vidprior`` in subprocesses, so they hold whatever the engine looks like inside.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests._util import run_cli, write_color_video

CLASSES = 3
BASE = [
    "model.name=slowonly_tiny",
    f"model.num_classes={CLASSES}",
    "data.geometry=4x2",
    "data.crop_size=32",
    "data.short_side=32",
    "data.test_short_side=32",
    "data.test_crop_size=32",
    "train.batch_size=4",
    "train.ckpt_every_minutes=null",
    "optim.warmup_epochs=0",
    "optim.lr=0.05",
]


# ------------------------------------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_data")
    lines = []
    for c in range(CLASSES):
        for k in range(8):  # 24 videos, batch 4: 6 steps per epoch
            write_color_video(root / f"{c}_{k}.mp4", c, seed=c * 100 + k)
            lines.append(f"{c}_{k}.mp4 {c}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def _final(out: Path) -> dict:
    from vidprior.engine.checkpoint import find_latest, load_checkpoint

    return load_checkpoint(find_latest(out).path)


def _losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


@pytest.mark.slow
def test_resume_mid_epoch_and_after_an_epoch_boundary_with_dropout_mixup_and_workers(videos, tmp_path):
    """Dropout 0.5, mixup and 2 workers draw random numbers at every step: a resume that does not restore the
    random state (torch, numpy, python, the sampler's and workers' seeds) ends with different weights.

    The interrupted run ends twice without saving after its last checkpoint (what SIGKILL leaves): after step 4
    (newest checkpoint: step 3, mid-epoch) and after step 7 (newest: the end-of-epoch checkpoint at step 6)."""
    args = [
        *BASE,
        "model.dropout=0.5",
        "train.mixup=0.8",
        "data.workers=2",
        "optim.epochs=2",
        "train.ckpt_every_steps=3",
        f"data.train={videos / 'train.txt'}",
        f"data.root={videos}",
    ]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    res = run_cli("finetune", *args, f"out={ref}")
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli("finetune", *args, f"out={cut}", "train.max_steps=4")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _final(cut)["train_state"]["step"] == 3  # mid-epoch: batch 3 of 6
    res = run_cli("finetune", *args, f"out={cut}", "train.max_steps=7", "--resume", "auto")
    assert res.returncode == 0, res.stderr[-3000:]
    state = _final(cut)["train_state"]
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 0)  # saved at the epoch boundary
    res = run_cli("finetune", *args, f"out={cut}", "--resume", "auto")
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _final(ref), _final(cut)
    assert a["train_state"]["step"] == b["train_state"]["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # the logged losses of the steps run after each resume match the uninterrupted run's
    ref_losses, cut_losses = _losses(ref), _losses(cut)
    assert cut_losses[:4] == ref_losses[:4]  # first run: steps 1-4
    assert cut_losses[4:8] == ref_losses[3:7]  # resumed at step 3: steps 4-7
    assert cut_losses[8:] == ref_losses[6:]  # resumed at step 6: steps 7-12


def _small_file_size_limit() -> None:
    """In the child: writes past 100 kB fail with EFBIG (as on a full disk) instead of killing it with SIGXFSZ."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_a_run_that_cannot_save_a_checkpoint_stops_with_one_line(videos, tmp_path):
    """The logs fit under the limit, the 160 kB checkpoint does not: the run stops at its first save, exit 2."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [*BASE, "data.workers=0", "optim.epochs=1", "train.ckpt_every_steps=2", f"data.train={videos / 'train.txt'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "vidprior", "finetune", *args, f"data.root={videos}", f"out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=_small_file_size_limit,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"{out / 'checkpoints'}: could not save checkpoint step 2" in errors[0]
    assert "MiB free there" in errors[0] and "no earlier checkpoint exists" in errors[0]
    assert not list((out / "checkpoints").iterdir())  # no partial checkpoint left
    assert _losses(out) and len(_losses(out)) == 2  # it stopped at the first save


# ------------------------------------------------------------------------------------------------ multi-view test
R_VALUES = {  # red level of the left, centre and right third of every frame, per video
    "v0": (200, 130, 250),
    "v1": (150, 250, 240),
    "v2": (245, 140, 160),
}
LABELS = {"v0": 2, "v1": 1, "v2": 0}
FC_WEIGHT = torch.tensor([0.0, 2.0, 4.0])  # logits = FC_WEIGHT * f + FC_BIAS, f = the view's normalised red level
FC_BIAS = torch.tensor([1.0, 0.0, -3.0])
MEAN_R, STD_R = 0.485, 0.229


def _write_frames(folder: Path, reds: tuple[int, int, int], frames: int = 12) -> None:
    folder.mkdir(parents=True)
    img = np.zeros((32, 96, 3), np.uint8)
    for i, r in enumerate(reds):
        img[:, 32 * i : 32 * (i + 1)] = (r, 60, 60)
    for t in range(frames + 2):  # img_00000 .. : whichever start index the reader uses
        Image.fromarray(img).save(folder / f"img_{t:05d}.png")


def _view_reading_model_weights() -> dict[str, torch.Tensor]:
    """slowonly_tiny weights whose logits are ``FC_WEIGHT * f + FC_BIAS`` with ``f`` the view's mean normalised red
    level (when positive): the stem and every shortcut pass channel 0 through, every residual branch is zeroed."""
    from vidprior.models import create_model

    sd = create_model("slowonly_tiny", num_classes=CLASSES).state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith("running_var"):
                v.fill_(1.0 - 1e-5)  # with BN's eps: an exact identity scale
            elif v.is_floating_point():
                v.zero_()
        stem = sd["backbone.conv1.conv.weight"]  # (16, 3, 1, 7, 7)
        stem[0, 0, 0, 3, 3] = 1.0  # channel 0 = the red channel, centre tap only (padding never reached)
        sd["backbone.conv1.bn.weight"][0] = 1.0
        for k in sd:
            if k.endswith("downsample.conv.weight"):
                sd[k][0, 0] = 1.0  # (C_out, C_in, 1, 1, 1): channel 0 -> channel 0
                sd[k.replace("conv.weight", "bn.weight")][0] = 1.0
        sd["cls_head.fc_cls.weight"][:, 0] = FC_WEIGHT
        sd["cls_head.fc_cls.bias"][:] = FC_BIAS
    return sd


def _expected_scores(reds: tuple[int, int, int], clips: int) -> torch.Tensor:
    per_view = []
    for r in reds:  # three crops (left, centre, right), each a uniform third of the frame
        f = max(0.0, (r / 255 - MEAN_R) / STD_R)
        per_view.append((FC_WEIGHT * f + FC_BIAS).softmax(-1))
    return torch.stack(per_view * clips).mean(0)  # every clip sees the same frames


def test_vidprior_test_averages_the_softmax_of_every_view(tmp_path):
    from safetensors.torch import save_file

    for vid, reds in R_VALUES.items():
        _write_frames(tmp_path / "frames" / vid, reds)
    (tmp_path / "test.txt").write_text("".join(f"{vid} 12 {LABELS[vid]}\n" for vid in R_VALUES))
    args = [
        *BASE,
        "model.dropout=0.0",
        "data.format=rawframes",
        "data.template=img_{:05d}.png",
        "data.test_clips=2",
        "data.test_crops=3",
        "data.workers=0",
        f"data.root={tmp_path / 'frames'}",
        f"data.test={tmp_path / 'test.txt'}",
        f"out={tmp_path / 'test'}",
    ]
    weights = tmp_path / "view_reader.safetensors"
    save_file(_view_reading_model_weights(), str(weights))
    res = run_cli("test", *args, "--weights", str(weights))
    assert res.returncode == 0, res.stderr[-3000:]
    lines = (tmp_path / "test" / "predictions.jsonl").read_text().splitlines()
    rows = {r["video_id"]: r for r in map(json.loads, lines)}
    hits = 0
    for vid, reds in R_VALUES.items():
        expected = _expected_scores(reds, clips=2)
        order = expected.argsort(descending=True).tolist()
        assert rows[vid]["top5"] == order, vid
        assert rows[vid]["scores"] == pytest.approx(expected[order].tolist(), abs=1e-5), vid
        # the first view alone, or the mean of the logits, would rank differently or score differently
        hits += order[0] == LABELS[vid]
    metrics = json.loads((tmp_path / "test" / "test_metrics.json").read_text())
    assert metrics["views"] == 6 and metrics["videos"] == 3
    assert metrics["top1"] == pytest.approx(100 * hits / 3)
    assert metrics["top5"] == pytest.approx(100.0)
