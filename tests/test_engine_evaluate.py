"""The one evaluator (vidprior.engine.evaluate) against scores computed by hand: multi-view averaging, top-k,
loss, samples counted once, unlabelled samples, and the test job's report and predictions file."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from vidprior.engine.evaluate import evaluate, summary_metrics, view_scores, write_test_report


class Table(nn.Module):
    """Logits read from the input: a view (C=1, T=1, H=1, W=K) holds its own logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # (N, 1, 1, 1, K) -> (N, K)


def _views(*logit_rows: list[float]) -> torch.Tensor:
    return torch.tensor(logit_rows, dtype=torch.float32).view(len(logit_rows), 1, 1, 1, -1)  # (V, 1, 1, 1, K)


def test_view_scores_average_the_softmax_of_every_view():
    a, b = [4.0, 0.0, 0.0], [0.0, 0.0, 5.0]
    x = torch.stack([_views(a, b)])  # (B=1, V=2, 1, 1, 1, K=3)
    got = view_scores(Table(), x, sample_dims=4)
    want = (torch.tensor(a).softmax(0) + torch.tensor(b).softmax(0)) / 2
    torch.testing.assert_close(got[0], want)
    # the first view alone would predict class 0; the average predicts class 2
    assert int(got.argmax()) == 2
    single = view_scores(Table(), _views(a), sample_dims=4)  # (B=1, 1, 1, 1, K): no views axis
    torch.testing.assert_close(single[0], torch.tensor(a).softmax(0))


def _batches():
    # sample 0: views favour class 2 on average (label 2); sample 1: class 0 (label 1, top-2 hit);
    # sample 2 repeats sample 0's index (padding) and must not count again; sample 3 is unlabelled
    s0 = _views([4.0, 0.0, 0.0], [0.0, 0.0, 5.0])
    s1 = _views([3.0, 2.0, 0.0], [3.0, 2.0, 0.0])
    s3 = _views([0.0, 9.0, 0.0], [0.0, 9.0, 0.0])
    return [
        {"video": torch.stack([s0, s1]), "label": torch.tensor([2, 1]), "index": torch.tensor([0, 1]),
         "video_id": ["v0", "v1"]},
        {"video": torch.stack([s0, s3]), "label": torch.tensor([2, -1]), "index": torch.tensor([0, 3]),
         "video_id": ["v0", "v3"]},
    ]  # fmt: skip


def _inputs(batch):
    return batch["video"], batch["label"]


def test_evaluate_counts_each_labelled_sample_once_with_hand_computed_metrics():
    ev = evaluate(Table(), _batches(), _inputs, sample_dims=4, keep_scores=True)
    p0 = (torch.tensor([4.0, 0.0, 0.0]).softmax(0) + torch.tensor([0.0, 0.0, 5.0]).softmax(0)) / 2
    p1 = torch.tensor([3.0, 2.0, 0.0]).softmax(0)
    assert (ev.correct1, ev.correct5, ev.total) == (1, 2, 2)  # top-5 of 3 classes: every labelled sample
    assert ev.loss_sum == pytest.approx(-math.log(p0[2]) - math.log(p1[1]), rel=1e-5)
    m = summary_metrics(*ev.sums())
    assert m["top1"] == 50.0 and m["top5"] == 100.0
    assert m["loss"] == pytest.approx((-math.log(p0[2]) - math.log(p1[1])) / 2, rel=1e-5)
    assert ev.ids == ["v0", "v1", "v3"] and ev.labels == [2, 1, -1] and ev.views == 2
    assert summary_metrics(0, 0, 0, 0) == {}


def test_top5_is_not_top1_with_many_classes():
    logits = [[float(k) for k in range(10)]]  # class 9 first, class 5 fifth, class 4 sixth
    batches = [
        {"video": torch.stack([_views(*logits)] * 2), "label": torch.tensor([5, 4]), "index": torch.tensor([0, 1])}
    ]
    ev = evaluate(Table(), batches, _inputs, sample_dims=4)
    assert (ev.correct1, ev.correct5, ev.total) == (0, 1, 2)


def test_test_report_writes_predictions_and_mean_class_accuracy(tmp_path):
    ev = evaluate(Table(), _batches(), _inputs, sample_dims=4, keep_scores=True)
    metrics = write_test_report(ev, tmp_path, ["a", "b", "c"])
    assert metrics["videos"] == 3 and metrics["views"] == 2
    assert metrics["top1"] == 50.0 and metrics["top5"] == 100.0
    assert metrics["mean_class_accuracy"] == 50.0  # class 2: 1/1, class 1: 0/1
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["video_id"] for r in rows] == ["v0", "v1", "v3"]
    assert rows[0]["top5"][0] == 2 and rows[1]["top5"][0] == 0 and rows[2]["label"] == -1
    assert rows[1]["scores"][0] == pytest.approx(float(torch.tensor([3.0, 2.0, 0.0]).softmax(0)[0]), abs=1e-6)
    assert (tmp_path / "confusion.png").is_file()
