"""The command line, run for real as a subprocess (``python -m vidprior`` and the ``vidprior`` console script)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vidprior

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = shutil.which("vidprior", path=os.path.dirname(sys.executable))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _module(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "vidprior", *args])


def _script(*args: str) -> subprocess.CompletedProcess:
    if SCRIPT is None:
        pytest.fail(f"the console script 'vidprior' is not installed next to {sys.executable}")
    return _run([SCRIPT, *args])


@pytest.mark.parametrize("runner", [_module, _script], ids=["python-m", "script"])
def test_help_lists_env(runner):
    result = runner("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: vidprior" in result.stdout
    assert re.search(r"^\s+env\b", result.stdout, re.MULTILINE), result.stdout
    assert "Traceback" not in result.stderr


def test_no_command_prints_help():
    result = _module()
    assert result.returncode == 0, result.stderr
    assert "usage: vidprior" in result.stdout


def test_version_matches_package():
    result = _script("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vidprior {vidprior.__version__}"


def test_env_json_reports_torch_version():
    result = _module("env", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert isinstance(info, dict)
    assert info["torch"]
    assert torch.__version__.startswith(info["torch"].split("+")[0])
    assert info["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert info["vidprior"] == vidprior.__version__
    assert info["python"] == sys.version.split()[0]
    assert all(isinstance(v, str) for v in info.values())


def test_unknown_command_fails_cleanly():
    result = _script("frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
    assert "error" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_models_command_lists_sizes_from_the_registry():
    result = subprocess.run(
        [sys.executable, "-m", "vidprior", "models", "slow*", "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(vidprior.list_models("slow*"))
    for name, row in rows.items():
        with torch.device("meta"):
            model = vidprior.create_model(name)
        assert row["params_m"] == round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
        assert row["sts_layers"] == len(model.sts_layers)
    bad = subprocess.run([sys.executable, "-m", "vidprior", "models", "nope*"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no model matches" in bad.stderr and "Traceback" not in bad.stderr


def test_every_command_comes_from_the_table_and_is_listed():
    from vidprior.cli import COMMANDS, build_parser

    names = [row[0] for row in COMMANDS]
    assert len(set(names)) == len(names) and all(len(row) == 4 for row in COMMANDS)
    _, parsers = build_parser()
    assert list(parsers) == names
    help_text = _module("--help").stdout
    for name, help_, _add, _run in COMMANDS:
        assert re.search(rf"^\s+{name}\b", help_text, re.MULTILINE), name
        assert help_.split()[0] in help_text


@pytest.mark.parametrize(
    "argv",
    [
        ["finetune", "-c", "r.yaml", "--resume", "auto", "optim.lr=0.1", "out=o"],
        ["finetune", "optim.lr=0.1", "-c", "r.yaml", "--resume", "auto", "out=o"],
        ["finetune", "--resume", "auto", "optim.lr=0.1", "--dry-run", "out=o", "-c", "r.yaml"],
    ],
)
def test_overrides_are_accepted_anywhere_on_the_line(argv):
    from vidprior.cli import parse_args

    args = parse_args(argv)
    assert args.command == "finetune" and args.config == "r.yaml" and args.resume == "auto"
    assert args.overrides == ["optim.lr=0.1", "out=o"]


def test_override_after_resume_auto_reaches_the_config(tmp_path):
    # through the real command: the override after `--resume auto` is applied (a bad value names the key)
    result = _module("finetune", "--resume", "auto", "data.train=t.txt", "optim.lr=-1", "--dry-run")
    assert result.returncode == 2 and "optim.lr=-1" in result.stderr and "unrecognized" not in result.stderr
    result = _module("finetune", "--resume", "auto", "--no-such-flag", "optim.lr=0.1")
    assert result.returncode == 2 and "unrecognized arguments: --no-such-flag" in result.stderr
