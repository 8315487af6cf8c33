"""End to end through the real CLI on generated data: pretrain -> finetune -> test, exact resume after SIGKILL,
non-finite steps, config errors, unsafe checkpoints, and 2 gloo processes under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests._util import run_cli, write_color_image, write_color_video
from tests.helpers.ports import free_port

CLASSES = 3
TINY = [
    "model.name=slowonly_tiny",
    f"model.num_classes={CLASSES}",
    "model.dropout=0.0",
    "data.geometry=4x2",
    "data.crop_size=32",
    "data.short_side=32",
    "data.test_short_side=32",
    "data.test_crop_size=32",
    "data.test_clips=2",
    "data.test_crops=1",
    "data.workers=0",
    "train.batch_size=4",
    "train.ckpt_every_steps=2",
    "train.ckpt_every_minutes=null",
    "optim.epochs=2",
    "optim.warmup_epochs=0",
    "optim.lr=0.05",
]


run = run_cli
FAULT_TRAIN = Path(__file__).resolve().parent / "helpers" / "fault_train.py"


def fault_run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A real training with faults injected by callbacks (tests/helpers/fault_train.py)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(FAULT_TRAIN), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "videos").mkdir()
    lines = {"train": [], "val": []}
    for split, per_class in (("train", 8), ("val", 2)):
        for c in range(CLASSES):
            for k in range(per_class):
                name = f"{split}_{c}_{k}.mp4"
                write_color_video(root / "videos" / name, c, seed=(split == "val") * 1000 + c * 100 + k)
                lines[split].append(f"{name} {c}")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    # SSv2-style: labels.json + train/validation JSON over <id>.webm
    (root / "ssv2").mkdir()
    templates = ["Moving [something] up", "Moving [something] down", "Holding [something]"]
    (root / "ssv2" / "labels.json").write_text(
        json.dumps({t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)})
    )
    for split, per_class in (("train", 4), ("validation", 1)):
        entries = []
        for c in range(CLASSES):
            for k in range(per_class):
                vid = f"{split[0]}{c}{k}"
                write_color_video(root / "ssv2" / f"{vid}.webm", c, codec="libvpx-vp9", seed=c * 10 + k)
                entries.append({"id": vid, "template": templates[c], "label": "x", "placeholders": ["x"]})
        (root / "ssv2" / f"{split}.json").write_text(json.dumps(entries))
    # images for pre-training
    for split, per_class in (("train", 12), ("val", 3)):
        for c in range(CLASSES):
            (root / "images" / split / f"class{c}").mkdir(parents=True)
            for k in range(per_class):
                write_color_image(root / "images" / split / f"class{c}" / f"{k}.png", c, seed=k)
    return root


def _k400(data: Path, out: Path) -> list[str]:
    return [
        *TINY,
        f"data.train={data / 'train.txt'}",
        f"data.val={data / 'val.txt'}",
        f"data.root={data / 'videos'}",
        f"out={out}",
    ]


def _train_losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def test_finetune_k400_list_learns_and_writes_a_run_folder(data, tmp_path):
    out = tmp_path / "run"
    # Batches of half the set (see the pre-training test below for why), so the loss curve is not left to chance.
    res = run("finetune", *_k400(data, out), "train.batch_size=12", "optim.epochs=4", "optim.lr=0.02")
    assert res.returncode == 0, res.stderr[-3000:]
    losses = _train_losses(out)
    half = len(losses) // 2
    assert len(losses) == 4 * (CLASSES * 8 // 12)
    assert sum(losses[half:]) / half < sum(losses[:half]) / half  # loss decreasing
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "curves.png", "best.safetensors"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "environment.json").read_text())["data_hash"]) == 64
    assert "images seen" in res.stdout and "device-hours" in res.stdout
    # multi-view test: one prediction row per video
    test = run(
        "test",
        *_k400(data, tmp_path / "test"),
        f"data.test={data / 'val.txt'}",
        "--weights",
        str(out / "best.safetensors"),
    )
    assert test.returncode == 0, test.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "test" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == CLASSES * 2 and all(len(r["top5"]) == CLASSES for r in rows)
    metrics = json.loads((tmp_path / "test" / "test_metrics.json").read_text())
    assert metrics["views"] == 2 and 0 <= metrics["top1"] <= 100 and "mean_class_accuracy" in metrics
    assert (tmp_path / "test" / "confusion.png").is_file()


def test_finetune_ssv2_json(data, tmp_path):
    s = data / "ssv2"
    args = [
        *TINY,
        "data.format=ssv2",
        "data.geometry=seg4",
        f"data.labels={s / 'labels.json'}",
        f"data.train={s / 'train.json'}",
        f"data.val={s / 'validation.json'}",
        f"data.root={s}",
        "train.ema_decay=0.9",
        "train.precise_bn_batches=2",
        "train.batch_size=6",  # half the set per batch, as in the K400-list test
        "optim.epochs=4",
        "optim.lr=0.02",
        f"out={tmp_path / 'ssv2'}",
    ]
    res = run("finetune", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    losses = _train_losses(tmp_path / "ssv2")
    assert len(losses) == 4 * (CLASSES * 4 // 6)
    assert sum(losses[4:]) < sum(losses[:4])  # loss decreasing
    val = [json.loads(x) for x in (tmp_path / "ssv2" / "metrics.jsonl").read_text().splitlines()]
    assert any("ema_top1" in r for r in val if r["kind"] == "val")


def test_pretrain_then_finetune_from_the_image_checkpoint(data, tmp_path):
    pre = tmp_path / "pre"
    args = [
        *TINY,
        "model.num_classes=3",
        "data.format=imagefolder",
        f"data.train={data / 'images' / 'train'}",
        f"data.val={data / 'images' / 'val'}",
        "data.randaugment=null",
        "data.short_side=null",
        # Batches of a third of the set: the classes differ only in colour, which batch norm over a 4-image
        # batch of one class would normalise away, leaving the loss curve to chance.
        "train.batch_size=12",
        "optim.epochs=4",
        "optim.lr=0.02",
        f"out={pre}",
    ]
    res = run("pretrain", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    losses = _train_losses(pre)
    half = len(losses) // 2
    assert len(losses) == 4 * (CLASSES * 12 // 12) and sum(losses[half:]) < sum(losses[:half])
    weights = pre / "best.safetensors"
    image_sd = load_file(str(weights))
    assert image_sd["backbone.layer3.0.conv1.conv.weight"].dim() == 4  # the 2D counterpart's checkpoint
    from vidprior.engine.assembly import build_model
    from vidprior.engine.config import load_config

    cfg = load_config(None, [*_k400(data, tmp_path / "ft"), "init.source=image", f"init.checkpoint={weights}"])
    model = build_model(cfg)
    w3 = model.state_dict()["backbone.layer3.0.conv1.conv.weight"]
    assert torch.equal(w3[:, :, 1], image_sd["backbone.layer3.0.conv1.conv.weight"])  # centre slice
    assert torch.count_nonzero(w3[:, :, [0, 2]]) == 0  # zero-init side taps


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    from vidprior.engine.checkpoint import find_latest, load_checkpoint

    return load_checkpoint(find_latest(out).path)


def test_sigkill_at_any_step_then_resume_is_bit_exact(data, tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert run("finetune", *_k400(data, ref)).returncode == 0
    killed = fault_run("--kill-at-step", "5", "finetune", *_k400(data, cut))
    assert killed.returncode == -9  # SIGKILL: no chance to save anything
    resumed = run("finetune", *_k400(data, cut), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _final_state(ref), _final_state(cut)
    assert a["train_state"]["step"] == b["train_state"]["step"] == 12
    assert a["config"]["optim"]["lr"] == 0.05 and len(a["env"]["data_hash"]) == 64 and a["env"]["world_size"] == 1
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert _train_losses(ref)[-1] == _train_losses(cut)[-1]


def test_resume_with_a_changed_config_names_the_field(data, tmp_path):
    out = tmp_path / "run"
    assert run("finetune", *_k400(data, out), "optim.epochs=1").returncode == 0
    res = run("finetune", *_k400(data, out), "optim.epochs=1", "optim.lr=0.1", "--resume", "auto")
    assert res.returncode == 2 and "differs in optim.lr" in res.stderr and "Traceback" not in res.stderr


def test_non_finite_steps_stop_and_keep_the_last_good_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    res = fault_run("--nan-from-step", "3", "finetune", *_k400(data, out), "train.max_nonfinite_steps=2")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "2 steps in a row had a non-finite loss" in res.stderr and "step_00000002" in res.stderr
    state = _final_state(out)
    assert state["train_state"]["step"] == 2 and all(
        torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
    )


def test_config_errors_and_dry_run(data, tmp_path):
    res = run("finetune", *_k400(data, tmp_path / "r"), "optim.lr=-1")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "optim.lr=-1" in res.stderr
    res = run("finetune", *_k400(data, tmp_path / "r"), "train.batchsize=4")
    assert res.returncode == 2 and "nearest valid key: 'train.batch_size'" in res.stderr
    res = run("finetune", *_k400(data, tmp_path / "r"), f"data.train={tmp_path / 'missing.txt'}", "--dry-run")
    assert res.returncode == 2 and "missing.txt" in res.stderr
    res = run("finetune", *_k400(data, tmp_path / "r"), "--dry-run")
    assert res.returncode == 0 and "dry run ok" in res.stdout
    assert not (tmp_path / "r" / "checkpoints").exists()


class _Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_crafted_pickles_are_refused_at_every_entry_point(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    torch.save({"backbone.conv1.conv.weight": _Evil()}, evil)
    for args in (
        ["finetune", *_k400(data, tmp_path / "a"), "init.source=video", f"init.checkpoint={evil}"],
        ["test", *_k400(data, tmp_path / "b"), f"data.test={data / 'val.txt'}", "--weights", str(evil)],
    ):
        res = subprocess.run([sys.executable, "-m", "vidprior", *args], capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode == 2 and "refused to load" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="needs torchrun")
def test_two_gloo_processes_match_one_process(data, tmp_path):
    common = [*_k400(data, tmp_path), "train.norm_eval=true", "optim.epochs=1", "optim.clip_grad=null"]
    one = run("finetune", *common, f"out={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "-m",
            "vidprior",
            "finetune",
            *common,
            f"out={tmp_path / 'two'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
    assert b["world_size"] == 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="needs torchrun")
def test_torchrun_restarts_a_killed_worker_and_the_run_resumes(data, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    marker = tmp_path / "killed_once"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "--max-restarts=1",
            f"--master_port={free_port()}",
            str(FAULT_TRAIN),
            "--kill-at-step",
            "5",
            "--kill-once",
            str(marker),
            "--resume",
            "auto",
            "finetune",
            *_k400(data, tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert marker.exists()  # the worker really died once
    assert _final_state(tmp_path / "run")["train_state"]["step"] == 2 * (CLASSES * 8 // 4)


def test_sigterm_saves_a_checkpoint_and_exits_143(data, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vidprior",
            "finetune",
            *_k400(data, out),
            "optim.epochs=50",
            "train.ckpt_every_steps=1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(_train_losses(out) if (out / "metrics.jsonl").exists() else []) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    state = _final_state(out)
    assert state["train_state"]["step"] >= 3 and state["train_state"]["step"] % 1000 != 0
    assert "--resume auto" in err


def test_precise_bn_recomputes_exact_statistics():
    from vidprior.engine.freezing import recompute_bn_stats

    bn = torch.nn.BatchNorm3d(3)
    batches = [torch.randn(4, 3, 2, 5, 5) * (i + 1) + i for i in range(3)]
    recompute_bn_stats(bn, batches, torch.device("cpu"), bn)
    per_batch_mean = torch.stack([b.mean(dim=(0, 2, 3, 4)) for b in batches])
    torch.testing.assert_close(bn.running_mean, per_batch_mean.mean(0))
    per_batch_var = torch.stack([b.transpose(0, 1).flatten(1).var(1, unbiased=True) for b in batches])
    torch.testing.assert_close(bn.running_var, per_batch_var.mean(0))
    assert bn.momentum == 0.1  # restored


@pytest.mark.slow
def test_resume_auto_with_every_checkpoint_damaged_says_so_unless_allowed_to_restart(data, tmp_path):
    out = tmp_path / "run"
    assert run("finetune", *_k400(data, out), "optim.epochs=1").returncode == 0
    from vidprior.engine.checkpoint import list_checkpoints

    damaged = list_checkpoints(out)
    assert len(damaged) >= 2
    for info in damaged:
        state = info.path / "state.pt"
        state.write_bytes(state.read_bytes()[:100])  # truncated: the manifest's checksum no longer matches
    # an override after `--resume auto` is accepted; the damaged checkpoints are listed with the reason
    res = run("finetune", *_k400(data, out), "--resume", "auto", "optim.epochs=1")
    assert res.returncode == 2, res.stderr[-2000:]
    line = res.stderr.strip()
    assert line.count("\n") == 0 and "is damaged" in line and "--allow-restart" in line, line
    assert all(info.path.name in line for info in damaged) and "checksum mismatch" in line
    res = run("finetune", "--resume", "auto", *_k400(data, out), "--allow-restart", "optim.epochs=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "starting over (--allow-restart)" in res.stderr
    assert _final_state(out)["train_state"]["step"] == CLASSES * 8 // 4


TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


def _torchrun_fault(
    *args: str, timeout_s: int | None = None, monitor_s: float | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if timeout_s is not None:
        env["VIDPRIOR_DIST_TIMEOUT_S"] = str(timeout_s)
    # monitor_s: how long torchrun waits before it notices a finished worker and terminates the others
    monitor = [] if monitor_s is None else [f"--monitor-interval={monitor_s}"]
    cmd = [TORCHRUN, "--nproc_per_node=2", *monitor, f"--master_port={free_port()}", str(FAULT_TRAIN), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="needs torchrun")
def test_non_finite_loss_on_one_rank_is_the_same_decision_on_every_rank(data, tmp_path):
    out = tmp_path / "run"
    res = _torchrun_fault(
        "--nan-from-step", "3", "--nan-rank", "1", "finetune", *_k400(data, out), "train.max_nonfinite_steps=2",
        monitor_s=10,  # the rank that stops first must not have the other killed before it has said why
    )  # fmt: skip
    assert res.returncode != 0
    # rank 0's own losses stay finite, yet it skips the same steps and stops with the same error as rank 1. The two
    # processes share one stderr pipe, so their lines may interleave: count the messages, not the lines.
    assert res.stderr.count("fault_train: error: 2 steps in a row had a non-finite") == 2, res.stderr[-3000:]
    state = _final_state(out)
    assert state["train_state"]["step"] == 2 and state["world_size"] == 2


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="needs torchrun")
def test_a_stuck_peer_fails_the_run_within_the_time_out(data, tmp_path):
    res = _torchrun_fault(
        "--stall-at-step", "3", "--stall-rank", "1", "finetune", *_k400(data, tmp_path / "run"), timeout_s=15
    )
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if "fault_train: error:" in ln]
    assert errors and "another process did not answer within 15 s" in errors[0], res.stderr[-3000:]
    assert "VIDPRIOR_DIST_TIMEOUT_S sets the time-out" in errors[0] and errors[0].startswith(
        "fault_train: error: process 0"
    )


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="needs torchrun")
def test_bad_files_on_one_rank_stop_every_rank(data, tmp_path):
    videos = data / "videos"
    bad = tmp_path / "bad"
    bad.mkdir()
    for k in range(6):
        (bad / f"bad{k}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # a header, no video
    lines = (data / "train.txt").read_text().splitlines()
    rows = [f"{videos / ln.split()[0]} {ln.split()[1]}" for ln in lines] + [f"{bad}/bad{k}.mp4 0" for k in range(6)]
    (tmp_path / "train.txt").write_text("\n".join(rows) + "\n")
    args = [*_k400(data, tmp_path / "run"), f"data.train={tmp_path / 'train.txt'}", "data.max_bad_fraction=0.05"]
    res = _torchrun_fault("finetune", *args, timeout_s=120)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if "fault_train: error:" in ln]
    assert errors and "max_bad_fraction" in errors[0], res.stderr[-3000:]
    # the other process stops at once (torchrun ends it, or its collective fails on the closed connection), never
    # after waiting out the 120 s time-out
    assert not any("did not answer" in e for e in errors), errors


def test_every_process_gets_the_same_number_of_batches():
    """Whatever the data set size, no process runs out of batches before the others (which would hang them)."""
    from vidprior.engine.distributed import ResumableSampler

    for n in range(1, 30):
        for world in (2, 3):
            for drop_last in (False, True):
                if drop_last and n < 2 * world:
                    continue
                lens = {
                    len(list(ResumableSampler(n, batch_size=2, rank=r, world_size=world, drop_last=drop_last)))
                    for r in range(world)
                }
                assert len(lens) == 1, (n, world, drop_last, lens)
