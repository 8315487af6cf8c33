"""The regression net (issue 9): hand-computed values that fail on one-line bugs the rest of the suite let through.

Metrics against counts worked out by hand, the bad-file limit exactly at its edge, the registry's expected model
names (a dropped model fails here instead of being skipped elsewhere), SlowFast's per-pathway frame sampling and its
head order against a hand reference.
"""

from __future__ import annotations

import json

import pytest
import torch

from vidprior.data.errors import DecodeError
from vidprior.data.robust import BadFileBudget, BadFileTracker, DataQualityError
from vidprior.engine.metrics import confusion_matrix, mean_class_accuracy, topk_correct
from vidprior.models import create_model, list_models


# ------------------------------------------------------------------------------------------------ metrics
def _scores() -> tuple[torch.Tensor, torch.Tensor]:
    # 5 samples, 4 classes. Ranking of each row (best first) is written next to it.
    scores = torch.tensor(
        [
            [0.10, 0.50, 0.30, 0.05],  # 1, 2, 0, 3   label 1: top1 hit
            [0.40, 0.30, 0.20, 0.10],  # 0, 1, 2, 3   label 2: rank 3 -> top3 hit, not top2
            [0.05, 0.10, 0.25, 0.60],  # 3, 2, 1, 0   label 0: rank 4 -> only top4
            [0.70, 0.10, 0.15, 0.05],  # 0, 2, 1, 3   label 2: rank 2
            [0.20, 0.20, 0.10, 0.50],  # 3, (0|1), ... label 3: top1 hit
        ]
    )
    labels = torch.tensor([1, 2, 0, 2, 3])
    return scores, labels


def test_topk_correct_hand_counts():
    scores, labels = _scores()
    assert topk_correct(scores, labels, ks=(1, 2, 3, 4)) == {1: 2, 2: 3, 3: 4, 4: 5}
    assert topk_correct(scores, labels) == {1: 2, 5: 5}  # k=5 capped at 4 classes: every sample
    assert topk_correct(scores[:1], torch.tensor([2]), ks=(1, 2)) == {1: 0, 2: 1}


def test_confusion_matrix_rows_are_true_columns_predicted():
    preds = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    labels = torch.tensor([0, 1, 2, 2, 2, 0, 0])
    cm = confusion_matrix(preds, labels, 4)
    expected = torch.tensor(
        [
            [2, 0, 1, 0],  # true 0: predicted 0, 2, 0
            [0, 1, 0, 0],  # true 1: predicted 1
            [0, 1, 2, 0],  # true 2: predicted 1, 2, 2
            [0, 0, 0, 0],  # class 3 never occurs
        ]
    )
    assert torch.equal(cm, expected)
    assert cm.dtype == torch.int64 and cm.sum() == len(labels)


def test_mean_class_accuracy_averages_present_classes_only():
    cm = torch.tensor([[2, 0, 1, 0], [0, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]])
    # class 0: 2/3, class 1: 1/1, class 2: 2/3; class 3 absent -> (2/3 + 1 + 2/3) / 3
    assert mean_class_accuracy(cm) == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    # differs from overall accuracy (5/7): a mean over samples instead of classes is a bug
    assert mean_class_accuracy(cm) != pytest.approx(5 / 7)
    assert mean_class_accuracy(torch.zeros(3, 3, dtype=torch.long)) == 0.0
    assert mean_class_accuracy(torch.tensor([[0, 4], [0, 0]])) == 0.0  # class 0 always wrong; class 1 absent


# ------------------------------------------------------------------------------------------------ bad-file limit
def _skipped(*paths: str) -> dict:
    return {"skipped": [json.dumps([[p, "decode_error", "x"] for p in paths])]}


@pytest.mark.parametrize("total,fraction,allowed", [(40, 0.075, 3), (100, 0.01, 1), (200, 0.05, 10), (10, 0.0, 0)])
def test_budget_allows_exactly_the_limit_and_stops_one_past_it(total, fraction, allowed):
    budget = BadFileBudget(total=total, max_bad_fraction=fraction)
    for i in range(allowed):
        budget.update(_skipped(f"bad{i}.mp4"))  # at the limit: goes on
    budget.update(_skipped(*[f"bad{i}.mp4" for i in range(allowed)]))  # the same files again: counted once
    assert len(budget.bad) == allowed
    with pytest.raises(DataQualityError, match=rf"^{allowed + 1} of {total} files are bad"):
        budget.add(f"bad{allowed}.mp4", "decode_error")


def test_budget_rejects_fractions_outside_0_1():
    for bad in (-0.01, 1.01):
        with pytest.raises(Exception, match="max_bad_fraction"):
            BadFileBudget(total=10, max_bad_fraction=bad)
    BadFileBudget(total=10, max_bad_fraction=1.0).update(_skipped(*[f"{i}" for i in range(10)]))  # all bad: allowed


def test_tracker_stops_at_exactly_max_consecutive_failures():
    tracker = BadFileTracker(total=1000, max_bad_fraction=1.0, max_consecutive=3)
    tracker.record(DecodeError("a.mp4", "decode_error", ""))
    tracker.record(DecodeError("b.mp4", "decode_error", ""))
    tracker.ok()  # a good sample resets the run of failures
    tracker.record(DecodeError("c.mp4", "decode_error", ""))
    tracker.record(DecodeError("d.mp4", "decode_error", ""))
    with pytest.raises(DataQualityError, match="3 samples in a row"):
        tracker.record(DecodeError("e.mp4", "decode_error", ""))


def test_tracker_counts_the_fraction_unless_told_not_to(tmp_path):
    report = tmp_path / "skipped.jsonl"
    tracker = BadFileTracker(total=20, max_bad_fraction=0.1, max_consecutive=100, report_path=report)
    for name in ("a", "b", "a"):
        tracker.record(DecodeError(f"{name}.mp4", "decode_error", "d"))
    assert [json.loads(x)["path"] for x in report.read_text().splitlines()] == ["a.mp4", "b.mp4"]  # once per file
    with pytest.raises(DataQualityError, match="3 of 20"):
        tracker.record(DecodeError("c.mp4", "decode_error", ""))
    off = BadFileTracker(total=20, max_bad_fraction=0.1, max_consecutive=100)
    off.check_fraction = False  # the loader counts in the main process instead
    for name in "abcde":
        off.record(DecodeError(f"{name}.mp4", "decode_error", ""))
    assert len(off.bad) == 5


# ------------------------------------------------------------------------------------------------ registry
EXPECTED_MODELS = {
    "csn50",
    "csn_tiny",
    "r2plus1d18",
    "r2plus1d34",
    "r2plus1d_tiny",
    "resnet50_3x1x1",
    "resnet50_3x3x3",
    "slowfast50_4x16",
    "slowfast50_8x8",
    "slowfast_tiny",
    "slowonly50",
    "slowonly_tiny",
    "x3d_l",
    "x3d_m",
    "x3d_s",
    "x3d_tiny",
    "x3d_xs",
}


def test_every_expected_model_is_registered():
    """Other tests skip a model that is not registered; here a dropped model fails."""
    missing = EXPECTED_MODELS - set(list_models())
    assert not missing, f"models dropped from the registry: {sorted(missing)}"


# ------------------------------------------------------------------------------------------------ SlowFast
def _frame_ids(x: torch.Tensor) -> list[int]:
    # each input frame t is filled with the value t: recover the frame index from channel 0, pixel (0, 0)
    return [round(v) for v in x[0, 0, :, 0, 0].tolist()]


def _capture_stem_inputs(model) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    bb = model.backbone
    bb.slow_path.conv1.register_forward_pre_hook(lambda m, a: seen.__setitem__("slow", a[0].detach().clone()))
    bb.fast_path.conv1.register_forward_pre_hook(lambda m, a: seen.__setitem__("fast", a[0].detach().clone()))
    return seen


@pytest.mark.parametrize(
    "name,frames,slow,fast",
    [
        # tau 8, alpha 8: slow every 8th frame, fast every frame (a hand reference of mmaction2's nearest sampling)
        ("slowfast_tiny", 32, [0, 8, 16, 24], list(range(32))),
        ("slowfast_tiny", 40, [0, 8, 16, 24, 32], list(range(40))),
        ("slowfast_tiny", 16, [0, 8], list(range(16))),
    ],
)
def test_slowfast_pathways_see_the_hand_computed_frames(name, frames, slow, fast):
    model = create_model(name, num_classes=3).eval()
    seen = _capture_stem_inputs(model)
    x = torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1, 1).expand(1, 3, frames, 32, 32).contiguous()
    with torch.no_grad():
        model(x)
    assert _frame_ids(seen["slow"]) == slow
    assert _frame_ids(seen["fast"]) == fast


def test_slowfast_8x8_samples_every_4th_frame_for_the_slow_pathway():
    bb = create_model("slowfast50_8x8", num_classes=3).backbone
    x = torch.arange(32, dtype=torch.float32).view(1, 1, 32, 1, 1).expand(1, 3, 32, 2, 2)
    assert _frame_ids(bb._sample(x, bb.tau)) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert _frame_ids(bb._sample(x, bb.tau // bb.alpha)) == list(range(32))


def test_slowfast_head_concatenates_fast_then_slow():
    model = create_model("slowfast_tiny", num_classes=2, dropout=0.0).eval()
    c_slow, c_fast = model.backbone.out_channels
    head = model.cls_head
    assert head.fc_cls.in_features == c_slow + c_fast
    x_slow = torch.randn(1, c_slow, 1, 2, 2)
    x_fast = torch.randn(1, c_fast, 4, 2, 2)
    # fc row 0 sums the first c_fast features, row 1 the last c_slow: with [fast, slow] order these are the
    # pathway means summed by hand
    with torch.no_grad():
        head.fc_cls.weight.zero_()
        head.fc_cls.bias.zero_()
        head.fc_cls.weight[0, :c_fast] = 1
        head.fc_cls.weight[1, c_fast:] = 1
        out = head((x_slow, x_fast))
    fast_sum = x_fast.mean(dim=(2, 3, 4)).sum()
    slow_sum = x_slow.mean(dim=(2, 3, 4)).sum()
    torch.testing.assert_close(out[0], torch.stack([fast_sum, slow_sum]))
