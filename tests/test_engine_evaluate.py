"""The one evaluator (vidprior.engine.evaluate) against scores computed by hand: multi-view averaging, top-k,
loss, samples counted once, unlabelled samples, and the test job's report and predictions file."""

from __future__ import annotations

import contextlib
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


class Pooled(nn.Module):
    """Logits = the sum over channels, frames and rows of a view (C, T, H, W=K): views with C > 1 catch a views
    axis merged with the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 5, f"the model sees one clip per row, got {tuple(x.shape)}"
        return x.sum(dim=(1, 2, 3))  # (N, C, T, H, K) -> (N, K)


def test_view_scores_keep_channels_apart_from_views():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 1, 2, 4, generator=g)  # (B=2, V=3, C=2, T=1, H=2, K=4)
    got = view_scores(Pooled(), x, sample_dims=4)
    want = x.sum(dim=(2, 3, 4)).softmax(-1).mean(1)  # per view logits, softmax, mean over views
    torch.testing.assert_close(got, want)


def test_evaluate_runs_the_model_under_the_given_autocast():
    entered = []

    @contextlib.contextmanager
    def autocast():
        entered.append(True)
        yield

    evaluate(Table(), _batches(), _inputs, sample_dims=4, autocast=autocast)
    assert len(entered) == 2  # once per batch


def test_validation_keeps_no_scores_and_reports_every_batch_size():
    sizes = []
    ev = evaluate(Table(), _batches(), _inputs, sample_dims=4, on_batch=sizes.append)
    assert ev.scores == [] and ev.labels == [] and ev.ids == []  # validation must not hold every score in memory
    assert sizes == [2, 2]


def test_single_view_batches_without_index_or_ids_count_every_sample_and_class_zero():
    # (B, C=2, T=1, H=1, K=3) without a views axis; no "index" (no padding to drop) and no "video_id"
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 3.0]])
    x = (logits / 2).view(3, 1, 1, 1, 3).expand(3, 2, 1, 1, 3)  # the two channels add up to the logits
    batches = [{"video": x, "label": torch.tensor([0, 0, 2])}, {"video": x[:1], "label": torch.tensor([0])}]
    ev = evaluate(Pooled(), batches, _inputs, sample_dims=4, keep_scores=True)
    assert ev.views == 1
    assert (ev.correct1, ev.total) == (3, 4)  # class 0 is a class: label 0 counts
    assert ev.ids == ["None"] * 4 and ev.labels == [0, 0, 2, 0]


def test_soft_label_batches_are_scored_not_counted_and_later_batches_still_count():
    soft = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])  # mixup-style targets: no single class
    batches = [
        {"video": torch.stack([_views([0.0, 3.0, 0.0])] * 2), "label": soft, "index": torch.tensor([0, 1])},
        {"video": torch.stack([_views([3.0, 0.0, 0.0])]), "label": torch.tensor([0]), "index": torch.tensor([2])},
    ]
    ev = evaluate(Table(), batches, _inputs, sample_dims=4, keep_scores=True)
    assert (ev.correct1, ev.total) == (1, 1)  # only the hard-labelled batch after the soft one
    assert ev.labels == [-1, -1, 0] and ev.ids == ["0", "1", "2"]  # ids fall back to the sample index


def test_a_batch_whose_ids_or_labels_do_not_match_its_clips_fails_loudly():
    batch = _batches()[0]
    with pytest.raises(ValueError):
        evaluate(Table(), [{**batch, "video_id": ["v0"]}], _inputs, sample_dims=4, keep_scores=True)
    with pytest.raises(ValueError):
        evaluate(Table(), [{**batch, "label": torch.tensor([2])}], _inputs, sample_dims=4, keep_scores=True)


def test_summary_metrics_divide_by_the_total():
    m = summary_metrics(3, 4, 5, 2.5)
    assert m == {"top1": 60.0, "top5": 80.0, "loss": 0.5}


def test_report_on_many_classes_counts_class_zero_and_writes_five_rounded_scores(tmp_path):
    logits = [2.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # 8 classes, class 0 highest
    rows = [_views(logits), _views(logits[::-1])]  # sample 1: class 7 highest
    batches = [{"video": torch.stack(rows * 2), "label": torch.tensor([0, 7, 1, 2]), "index": torch.arange(4),
                "video_id": ["a", "b", "c", "d"]}]  # fmt: skip
    ev = evaluate(Table(), batches, _inputs, sample_dims=4, keep_scores=True)
    metrics = write_test_report(ev, tmp_path)
    assert metrics["top1"] == 50.0  # a and b right, c and d wrong: 2 of 4, label 0 counted
    assert metrics["top5"] == 75.0  # c's class 1 is in [0..4]; d's class 2 is not in [7..3]
    assert metrics["mean_class_accuracy"] == 50.0  # classes 0 and 7: 1.0, classes 1 and 2: 0.0
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    p = torch.tensor(logits).softmax(0)
    assert lines[0]["top5"] == p.topk(5).indices.tolist()
    assert lines[0]["scores"] == [round(v, 6) for v in p.topk(5).values.tolist()]


def test_report_without_scores_writes_an_empty_predictions_file(tmp_path):
    from vidprior.engine.evaluate import Evaluation

    metrics = write_test_report(Evaluation(), tmp_path)
    assert metrics == {"videos": 0, "views": 0}
    assert (tmp_path / "predictions.jsonl").read_text() == ""
    assert not (tmp_path / "confusion.png").exists()


def test_report_refuses_an_evaluation_whose_ids_and_scores_disagree(tmp_path):
    ev = evaluate(Table(), _batches(), _inputs, sample_dims=4, keep_scores=True)
    ev.ids.pop()  # e.g. evaluations of two processes merged by hand, one id lost
    with pytest.raises(ValueError):
        write_test_report(ev, tmp_path)


def test_confusion_picture_names_the_classes(tmp_path):
    import matplotlib.image

    from vidprior.engine.metrics import confusion_matrix, draw_confusion

    ev = evaluate(Table(), _batches(), _inputs, sample_dims=4, keep_scores=True)
    write_test_report(ev, tmp_path, ["walk", "run", "jump"])
    cm = confusion_matrix(torch.cat(ev.scores)[:2].argmax(1), torch.tensor(ev.labels[:2]), 3)
    named = draw_confusion(cm, tmp_path / "named.png", ["walk", "run", "jump"])
    unnamed = draw_confusion(cm, tmp_path / "unnamed.png")
    got = matplotlib.image.imread(tmp_path / "confusion.png")
    assert (got == matplotlib.image.imread(named)).all()
    assert got.shape != matplotlib.image.imread(unnamed).shape or (got != matplotlib.image.imread(unnamed)).any()
