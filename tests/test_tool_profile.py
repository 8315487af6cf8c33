"""profile: structure and consistency of the numbers (never timing values)."""

from __future__ import annotations

import json

import pytest

from tests._util import run_cli
from vidprior.cli import main
from vidprior.utils.complexity import profile

ARGS = ["--batch", "2", "--frames", "2", "--size", "16", "--iters", "1", "--warmup", "0", "--json"]


@pytest.mark.slow  # four variants, each with timed training steps
def test_profile_json_has_every_variant_and_consistent_counts(capsys):
    assert main(["profile", "csn_tiny", *ARGS]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "csn_tiny" and data["shape"] == [2, 3, 2, 16, 16]
    rows = data["variants"]
    assert {(r["sts"], r["channels_last"]) for r in rows} == {
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    }
    assert len({r["params"] for r in rows}) == 1  # STS and memory format change no parameter
    assert len({r["macs"] for r in rows}) == 1  # STS splits the taps, it does not add multiply-adds
    from vidprior.models import create_model

    assert rows[0]["macs"] == profile(create_model("csn_tiny"), (2, 3, 2, 16, 16)).macs
    for r in rows:
        assert r["activation_mb"] > 0 and r["infer_clips_per_s"] > 0 and r["train_clips_per_s"] > 0


@pytest.mark.slow  # two profiles with timed training steps
def test_activation_memory_grows_with_the_batch(capsys):
    sizes = []
    for batch in ("1", "3"):
        args = ["profile", "slowonly_tiny", *ARGS]
        args[args.index("--batch") + 1] = batch
        assert main([*args, "--sts", "none"]) == 0
        rows = json.loads(capsys.readouterr().out)["variants"]
        sizes.append(rows[0]["activation_mb"])
    assert sizes[1] == pytest.approx(3 * sizes[0], rel=0.2)


@pytest.mark.slow  # a fresh interpreter imports torch (~10-20 s on a busy CPU)
def test_profile_command_table_in_a_subprocess_for_a_torchvision_model():
    r = run_cli("profile", "torchvision:r3d_18", "--batch", "2", "--frames", "2", "--size", "16", "--iters", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("torchvision:r3d_18") and "params (M)" in lines[2]
    assert len(lines) == 5  # no STS variant for torchvision models: plain, plain + channels_last
