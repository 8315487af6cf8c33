"""predict: top-k with the model's test views on a mixed folder (good, corrupt, missing), run folders and files."""

from __future__ import annotations

import json

import pytest
import torch

from tests._util import run_cli
from tests.tool_fixtures import CLASS_NAMES, GEOMETRY, SIZE, color_videos, train_tiny, write_run
from vidprior.analysis.predict import load_views, view_scores
from vidprior.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder of slowonly_tiny trained on one colour video per class, and held-out videos of each class."""
    base = tmp_path_factory.mktemp("predict")
    model = train_tiny(color_videos(base / "train", per_class=2, seed=0))
    run = write_run(base / "run", model)
    held_out = color_videos(base / "mixed", per_class=1, seed=100)
    (base / "mixed" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    return run, base / "mixed", held_out


def test_view_scores_average_softmax_over_views():
    model = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(3 * 2 * 4 * 4, 5))
    x = torch.randn(2, 3, 3, 2, 4, 4)  # (B, V, C, T, H, W)
    expected = torch.stack([model(x[b]).softmax(-1).mean(0) for b in range(2)])
    torch.testing.assert_close(view_scores(model, x), expected)


def test_load_views_gives_clips_times_crops(tmp_path):
    (video, _), *_ = color_videos(tmp_path)
    views = load_views(video, geometry=GEOMETRY, clips=2, crops=3, crop_size=24, short_side=SIZE)
    assert views.shape == (6, 3, 4, 24, 24)  # (clips x crops, C, T, H, W)


@pytest.mark.slow  # shares a model trained once per module (~1 min on a busy CPU)
def test_mixed_folder_correct_top1_and_every_bad_file_named(trained, capsys):
    run, folder, held_out = trained
    missing = folder / "missing.mp4"
    listing = folder.parent / "list.txt"
    listing.write_text(f"{missing} 0\n")
    code = main(["predict", str(folder), str(listing), "-w", str(run), "--json", "--topk", "2", "--batch-size", "3"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # some files could not be read (documented exit status)
    by_path = {r["path"]: r for r in out}
    assert len(out) == len(held_out) + 2
    for path, label in held_out:
        r = by_path[str(path)]
        assert r["ok"] and r["top"][0]["name"] == CLASS_NAMES[label] and r["top"][0]["class"] == label
        assert len(r["top"]) == 2 and r["top"][0]["score"] >= r["top"][1]["score"]
    assert by_path[str(folder / "corrupt.mp4")]["ok"] is False
    assert by_path[str(folder / "corrupt.mp4")]["reason"] in {"truncated", "decode_error", "no_video_stream"}
    assert by_path[str(missing)] == {"path": str(missing), "ok": False, "reason": "missing", "detail": "no such file"}


@pytest.mark.slow  # shares a model trained once per module (~1 min on a busy CPU)
def test_predict_command_table_from_a_weights_file_in_a_subprocess(trained, tmp_path):
    run, _, held_out = trained
    (video, label), *_ = held_out
    r = run_cli(
        "predict",
        str(video),
        "-w",
        str(run / "best.safetensors"),
        "--model",
        "slowonly_tiny",
        "--classes",
        str(run / "classes.txt"),
        "--geometry",
        GEOMETRY,
        "--crop-size",
        str(SIZE),
        "--clips",
        "1",
        "--crops",
        "1",
    )
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0].split()
    assert first[0] == str(video) and first[1] == CLASS_NAMES[label]


@pytest.mark.slow  # shares a model trained once per module (~1 min on a busy CPU)
def test_a_weights_file_for_another_model_is_refused_with_its_name(trained, capsys):
    run, _, held_out = trained
    code = main(["predict", str(held_out[0][0]), "-w", str(run / "best.safetensors"), "--model", "csn_tiny"])
    assert code == 2
    err = capsys.readouterr().err
    assert "best.safetensors" in err and "csn_tiny" in err
