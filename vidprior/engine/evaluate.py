"""The one evaluator: views -> averaged scores -> metrics (and a predictions file).

Validation during training (:meth:`~vidprior.engine.trainer.Trainer.validate`) and the ``test`` job both run
:func:`evaluate`. A sample with several views (clips x crops, paper Sec. 4 "Inference") is scored by the softmax of
each view averaged over its views; top-1 / top-5 count the labelled samples, each once (a distributed sampler pads
with repeats), and the loss is the negative log of the averaged score of the true class.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidprior.engine.metrics import confusion_matrix, mean_class_accuracy, topk_correct


def view_scores(
    model: nn.Module, x: Tensor, *, sample_dims: int, autocast: Callable = contextlib.nullcontext
) -> Tensor:
    """Softmax scores (B, classes) averaged over views. ``x`` is (B, V, *sample) with a views axis or (B, *sample);
    ``sample_dims`` is the number of dimensions of one view (4 for a clip C, T, H, W; 3 for an image)."""
    multi = x.dim() == sample_dims + 2
    if multi:
        b, v = x.shape[:2]
        x = x.flatten(0, 1)  # (B, V, ...) -> (B*V, ...)
    with autocast():
        scores = model(x).float().softmax(dim=-1)
    return scores.view(b, v, -1).mean(dim=1) if multi else scores  # (B*V, K) -> (B, V, K) -> (B, K)


@dataclass
class Evaluation:
    """What :func:`evaluate` saw on this process: sums over labelled samples (for an all-reduce) and, with
    ``keep_scores``, the per-sample averaged scores, labels and ids in loader order."""

    correct1: float = 0.0
    correct5: float = 0.0
    total: float = 0.0
    loss_sum: float = 0.0
    views: int = 0
    scores: list[Tensor] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def sums(self) -> list[float]:
        return [self.correct1, self.correct5, self.total, self.loss_sum]


def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    inputs: Callable[[dict[str, Any]], tuple[Tensor, Tensor]],
    *,
    sample_dims: int,
    autocast: Callable = contextlib.nullcontext,
    keep_scores: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Evaluation:
    """Score every batch (``inputs(batch) -> (x, labels)``) with ``model`` as it is (call ``model.eval()`` first).
    Samples seen before (same ``batch["index"]``) are not counted again; labels < 0 (unlabelled) and soft labels are
    scored but not counted. ``on_batch(batch_size)`` is called after each batch (a progress bar)."""
    out = Evaluation()
    seen: set[int] = set()
    with torch.no_grad():
        for batch in batches:
            x, y = inputs(batch)
            scores = view_scores(model, x, sample_dims=sample_dims, autocast=autocast)
            out.views = x.shape[1] if x.dim() == sample_dims + 2 else 1
            index = [int(i) for i in batch["index"]] if "index" in batch else [None] * len(scores)
            keep = torch.tensor([i is None or i not in seen for i in index], device=scores.device)
            seen.update(i for i in index if i is not None)
            if keep_scores:
                out.scores.append(scores[keep].cpu())
                labels = y.tolist() if y.dim() == 1 else [-1] * len(scores)  # soft labels: not counted
                ids = batch.get("video_id", index)
                out.labels += [int(v) for v, k in zip(labels, keep.tolist(), strict=True) if k]
                out.ids += [str(v) for v, k in zip(ids, keep.tolist(), strict=True) if k]
            if on_batch is not None:
                on_batch(len(scores))
            if y.dim() != 1:
                continue
            counted = keep & (y >= 0)
            hits = topk_correct(scores[counted], y[counted])
            out.correct1 += hits[1]
            out.correct5 += hits[5]
            out.total += int(counted.sum())
            out.loss_sum += float(F.nll_loss(scores[counted].clamp_min(1e-12).log(), y[counted], reduction="sum"))
    return out


def summary_metrics(correct1: float, correct5: float, total: float, loss_sum: float) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean loss from the sums of :class:`Evaluation` (all processes added)."""
    if total == 0:
        return {}
    return {"top1": 100 * correct1 / total, "top5": 100 * correct5 / total, "loss": loss_sum / total}


def write_test_report(ev: Evaluation, run_dir: Path, class_names: list[str] | None = None) -> dict[str, Any]:
    """The test job's metrics from kept scores: top-1, top-5, mean class accuracy (labelled samples), a confusion
    picture and ``predictions.jsonl`` (video id, label, top-5 classes and their averaged scores)."""
    from vidprior.engine.metrics import draw_confusion

    scores = torch.cat(ev.scores) if ev.scores else torch.zeros(0, 1)
    labels = torch.tensor(ev.labels, dtype=torch.long)
    metrics: dict[str, Any] = {"videos": len(ev.ids), "views": ev.views}
    labelled = labels >= 0
    if labelled.any():
        n = int(labelled.sum())
        hits = topk_correct(scores[labelled], labels[labelled])
        cm = confusion_matrix(scores[labelled].argmax(1), labels[labelled], scores.shape[1])
        metrics.update(
            top1=100 * hits[1] / n, top5=100 * hits[5] / n, mean_class_accuracy=100 * mean_class_accuracy(cm)
        )
        draw_confusion(cm, run_dir / "confusion.png", class_names)
    with open(run_dir / "predictions.jsonl", "w") as f:
        for vid, label, row in zip(ev.ids, ev.labels, scores, strict=True):
            top = row.topk(min(5, row.shape[0]))
            rec = {"video_id": vid, "label": label, "top5": top.indices.tolist()}
            f.write(json.dumps({**rec, "scores": [round(s, 6) for s in top.values.tolist()]}) + "\n")
    return metrics


__all__ = ["Evaluation", "evaluate", "summary_metrics", "view_scores", "write_test_report"]
