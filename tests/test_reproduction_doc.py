"""docs/reproduction.md is a contract: every command in its code blocks runs.

Each ``vidprior`` command is extracted from the document's ``bash`` blocks as a user would type it, its data is
pointed at small generated videos and images (``data.train=... data.val=... data.root=...``; nothing else changes),
and it runs through the CLI's ``main()`` with ``--dry-run``: the config validates, the checkpoint it starts from is
where the document's earlier command writes it, the run folder is writable and the first samples load. A
checkpoint a command needs must come from an earlier command of the document (its ``out=`` folder) or be one of the
named outside files; the dry run needs only that the file exists, so an empty stand-in is put there. The budget
commands run for real, and the Table 6 chain (pre-training ResNet50-3x3x3 with STS, then fine-tuning it on K400) runs
for one epoch in a subprocess, with the smoke overrides the document states.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests._util import write_color_image
from tests.video_fixtures import write_video
from vidprior.cli import main
from vidprior.engine.config import load_config

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "reproduction.md"
# files a documented command may start from that no documented command makes (the document says where they come from)
OUTSIDE_FILES = {"resnet50_90ep.pth"}
# the overrides the document states for the one-epoch runs of the Table 6 chain
SMOKE = [
    "optim.epochs=1",
    "optim.warmup_epochs=0",
    "train.batch_size=2",
    "data.crop_size=64",
    "data.short_side=72",
]
REAL_CHAIN = ("runs/pre100_r50_3x3x3_sts", "runs/t6_k400_r50_3x3x3_sts")


def _commands() -> list[tuple[list[str], str]]:
    """(argv after ``vidprior``, trailing comment) of every command in the document's bash blocks."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.strip():
                continue
            comment = line.split("#", 1)[1].strip() if "#" in line else ""
            argv = shlex.split(line, comments=True)
            assert argv[0] == "vidprior", f"not a vidprior command in docs/reproduction.md: {line!r}"
            out.append((argv[1:], comment))
    return out


COMMANDS = _commands()
RUNS = [(argv, c) for argv, c in COMMANDS if argv[0] in ("pretrain", "finetune", "test")]


def _option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def _overrides(argv: list[str]) -> list[str]:
    rest, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a in ("-c", "--config", "--weights", "--resume"):
            skip = True
        elif "=" in a and not a.startswith("-"):
            rest.append(a)
    return rest


def _value(argv: list[str], key: str) -> str | None:
    found = [a.split("=", 1)[1] for a in _overrides(argv) if a.split("=", 1)[0] == key]
    return found[-1] if found else None


def _starts_from(argv: list[str]) -> str | None:
    return _option(argv, "--weights") or _value(argv, "init.checkpoint")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Four small real videos (80 frames: long enough for 32x2 and 13x6 clips) as a K400-style list and as SS-V2
    JSON files, and an ImageFolder of four images per split."""
    base = tmp_path_factory.mktemp("repro_data")
    videos = base / "videos"
    videos.mkdir()
    entries = []
    for i in range(4):
        write_video(videos / f"v{i}.mp4", 80, width=64, height=48)
        entries.append((f"v{i}", i % 2))
    lst = base / "list.txt"
    lst.write_text("".join(f"v{i}.mp4 {label}\n" for i, (_, label) in enumerate(entries)))
    names = ["Pushing something", "Pulling something"]
    (base / "labels.json").write_text(json.dumps({n: str(k) for k, n in enumerate(names)}))
    split = [{"id": vid, "template": names[label].replace("something", "[something]")} for vid, label in entries]
    (base / "ssv2.json").write_text(json.dumps(split))
    for part in ("train", "val"):
        for label in range(2):
            folder = base / "images" / part / f"class{label}"
            folder.mkdir(parents=True)
            for k in range(2):
                write_color_image(folder / f"{k}.png", label, size=40, seed=k)
    return {"base": base, "videos": videos, "list": lst}


def _data_overrides(argv: list[str], data: dict[str, Path]) -> list[str]:
    """Point the command's data at the fixtures, according to the format its config resolves to."""
    task = "test" if argv[0] == "test" else argv[0]
    cfg = load_config(_option(argv, "-c"), [f"task={task}", *_overrides(argv), "init.checkpoint=x"])
    base = data["base"]
    if cfg.data.format == "imagefolder":
        return [f"data.train={base / 'images/train'}", f"data.val={base / 'images/val'}", "data.workers=0"]
    if cfg.data.format == "ssv2":
        split = base / "ssv2.json"
        extra = [f"data.labels={base / 'labels.json'}", "data.video_suffix=.mp4"]
    else:
        assert cfg.data.format == "list", f"no fixture for data.format={cfg.data.format!r}"
        split, extra = data["list"], []
    return [
        f"data.train={split}",
        f"data.val={split}",
        f"data.root={data['videos']}",
        *extra,
        *([f"data.test={split}"] if task == "test" or cfg.data.test is not None else []),
        "data.workers=0",
    ]


def test_the_document_has_commands_for_every_table():
    text = DOC.read_text()
    for heading in re.findall(r"^## (.+)$", text, re.M):
        section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        if heading.startswith(("Table", "Appendix Table", "Tables", "Budgets")):
            assert "```bash" in section, f"section {heading!r} has no commands"
    assert len(RUNS) > 80 and {a[0] for a, _ in RUNS} == {"pretrain", "finetune", "test"}


def test_every_run_starts_from_an_earlier_run_and_writes_its_own_folder():
    outs: list[str] = []
    for argv, _ in RUNS:
        start = _starts_from(argv)
        if start is not None and start not in OUTSIDE_FILES:
            assert Path(start).name == "best.safetensors" and str(Path(start).parent) in outs, (
                f"`vidprior {' '.join(argv)}` starts from {start}, which no earlier command of the document writes"
            )
        out = _value(argv, "out")
        assert out is not None and out not in outs, f"`vidprior {' '.join(argv)}`: no out= or a reused run folder"
        outs.append(out)


@pytest.mark.parametrize("argv", [a for a, _ in RUNS], ids=[_value(a, "out") or "?" for a, _ in RUNS])
def test_documented_command_dry_runs(argv, data, tmp_path, monkeypatch, capsys):
    work = data["base"] / "dry"  # one working folder for all commands, as a user's
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    start = _starts_from(argv)
    if start is not None and not Path(start).exists():
        Path(start).parent.mkdir(parents=True, exist_ok=True)
        Path(start).write_bytes(b"")  # stand-in: a dry run checks that the file is there, it loads nothing
    rc = main([*argv, *_data_overrides(argv, data), "--dry-run"])
    captured = capsys.readouterr()
    assert rc == 0, f"`vidprior {' '.join(argv)}` failed: {captured.err.strip()}"
    assert "dry run ok" in captured.out
    assert (work / _value(argv, "out") / "config.yaml").is_file()


@pytest.mark.parametrize("argv, comment", [(a, c) for a, c in COMMANDS if a[0] == "budget"])
def test_documented_budget_commands_print_the_claimed_ratio(argv, comment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for ratio in re.findall(r"x(\d\.\d\d)", comment):
        assert ratio in printed, f"`vidprior {' '.join(argv)}` does not print the x{ratio} its comment claims"
    png = _option(argv, "--png")
    if png:
        assert (tmp_path / png).stat().st_size > 0


def test_table6_chain_runs_for_one_epoch(data, monkeypatch, capsys):
    """The documented pre-training and fine-tuning commands of Table 6 (ResNet50-3x3x3 with STS), one epoch each on
    the fixtures, the fine-tuning starting from the checkpoint the pre-training wrote."""
    by_out = {_value(a, "out"): a for a, _ in RUNS}
    work = data["base"] / "real"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in REAL_CHAIN:
        argv = by_out[out]
        rc = main([*argv, *_data_overrides(argv, data), *SMOKE])
        assert rc == 0, f"`vidprior {' '.join(argv)}` failed: {capsys.readouterr().err[-3000:]}"
        assert (work / out / "best.safetensors").stat().st_size > 1_000_000  # full-size weights, not a stand-in
    from safetensors.torch import load_file

    pre = load_file(work / REAL_CHAIN[0] / "best.safetensors")
    config = (work / REAL_CHAIN[1] / "config.yaml").read_text()
    assert f"{REAL_CHAIN[0]}/best.safetensors" in config and "source: image" in config
    assert any(k.startswith("backbone.") for k in pre)


def test_a_documented_test_command_runs_as_typed(data):
    """One documented command through the real entry point (a subprocess, options and overrides in the document's
    order), from a folder with no configs/ of its own."""
    argv = next(a for a, _ in RUNS if a[0] == "test")
    work = data["base"] / "subprocess"
    work.mkdir()
    start = work / _starts_from(argv)
    start.parent.mkdir(parents=True)
    start.write_bytes(b"")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "vidprior", *argv, *_data_overrides(argv, data), "--dry-run"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dry run ok" in proc.stdout and (work / _value(argv, "out") / "config.yaml").is_file()


def _config(argv: list[str]):
    task = argv[0]
    return load_config(_option(argv, "-c"), [f"task={task}", *_overrides(argv), "init.checkpoint=x"])


def _sts(cfg) -> tuple:
    m = cfg.model
    return (bool(m.sts), m.static_mode, str(m.static_ratio), m.static_dilation) if m.sts else (False,)


def test_documented_runs_use_the_papers_settings():
    """The commands, resolved to configs, carry the paper's settings (not only the recipes they name)."""
    runs = {_value(a, "out"): a for a, _ in RUNS}
    cfgs = {out: _config(a) for out, a in runs.items()}
    for out, cfg in cfgs.items():
        if out.startswith("runs/pre300"):  # §4: the 300-epoch setting follows ResNet strikes back (LAMB)
            assert (cfg.optim.name, cfg.optim.epochs) == ("lamb", 300), out
        for prefix, epochs in (("runs/pre100_", 100), ("runs/pre150_", 150), ("runs/pre90_", 90)):
            if out.startswith(prefix):
                assert (cfg.optim.name, cfg.optim.epochs) == ("sgd", epochs), out
        if "scratch" in out:
            assert cfg.init.source == "scratch", out
    # every fine-tuning starts from a pre-training with the same STS layers (docs: "Rows with STS pre-train with
    # STS"); the one exception is Table 10's "w/o splitting", whose image network is the baseline's
    compared = 0
    for out, argv in runs.items():
        start = _value(argv, "init.checkpoint")
        pre = str(Path(start).parent) if start else None
        if argv[0] != "finetune" or pre not in cfgs or cfgs[pre].task != "pretrain" or "probe" in out:
            continue
        if cfgs[out].model.static_mode == "center" and cfgs[out].model.sts:
            assert _sts(cfgs[pre]) == (False,), out
        else:
            assert _sts(cfgs[out]) == _sts(cfgs[pre]), f"{out} fine-tunes {pre}, pre-trained with other STS layers"
        compared += 1
    assert compared >= 40
    previous = cfgs["runs/b1_slowfast_previous"]  # App. B.1: an ImageNet ResNet-50 inflated I3D-style, no STS
    assert (previous.init.source, previous.init.mode, previous.model.sts) == ("imagenet_resnet", "mean", False)
    x3d_frames = cfgs["runs/pre_k400frames_x3d_s_sts"]  # Table 8: 384M images of 240k K400 videos
    assert x3d_frames.optim.epochs * 240_000 * x3d_frames.data.frames_per_video == pytest.approx(384e6)
    r50_frames = cfgs["runs/pre_k400frames_r50_3x3x3_sts"]  # Table 8: 128M
    assert abs(r50_frames.optim.epochs * 240_000 * r50_frames.data.frames_per_video - 128e6) < 1.3e6
    for out, cfg in cfgs.items():
        if "probe" in out:  # Table 1: one linear layer trains on a frozen network without STS
            assert cfg.model.sts is False and len(cfg.train.trainable) == 1, out
