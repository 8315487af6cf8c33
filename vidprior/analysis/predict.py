"""Top-k classes for video files, with the model's test views (clips x crops, softmax averaged).

A file that cannot be read (missing, not a video, cut short: the reason codes of :mod:`vidprior.data.errors`) is
reported with its reason; the others still run. Files come one by one from the decoder and are scored in batches
of views.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from vidprior.analysis.source import ModelSource
from vidprior.data.errors import DecodeError
from vidprior.engine import evaluate
from vidprior.errors import VidpriorError


def load_views(
    path: str | Path,
    *,
    geometry: str,
    clips: int = 1,
    crops: int = 1,
    crop_size: int = 224,
    short_side: int | None = 256,
) -> Tensor:
    """The test views of one video: ``(V, C, T, H, W)`` float, V = clips x crops, normalised as in training.

    The same sampling and transform a test run uses (:func:`~vidprior.data.sampling.make_sampler`,
    :func:`~vidprior.data.transforms.video_eval_transform`). Raises ``DecodeError`` with the reason."""
    from torchvision import tv_tensors

    from vidprior.data.decode import open_video
    from vidprior.data.sampling import make_sampler
    from vidprior.data.transforms import video_eval_transform

    sampler = make_sampler(geometry, num_clips=clips)
    transform = video_eval_transform(crop_size=crop_size, short_side=short_side, crops=crops)
    with open_video(path) as reader:
        chunks = reader.get_clips(sampler.test(reader.info.num_frames))  # each (T, C, H, W) uint8
    views = [transform(tv_tensors.Video(c)) for c in chunks]  # each (C, T, H, W) or (crops, C, T, H, W)
    stacked = torch.stack(views)  # (clips, [crops,] C, T, H, W)
    return stacked.flatten(0, 1) if stacked.dim() == 6 else stacked  # (V, C, T, H, W)


def view_scores(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax scores averaged over views, ``x``: (B, V, C, T, H, W) -> (B, num_classes): the evaluator's maths
    (:func:`vidprior.engine.evaluate.view_scores`), as in validation and ``vidprior test``."""
    return evaluate.view_scores(model, x, sample_dims=4)


@dataclass
class Prediction:
    path: str
    ok: bool
    top: list[tuple[int, str, float]] = field(default_factory=list)  # (class index, name, score)
    reason: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        if not self.ok:
            return {"path": self.path, "ok": False, "reason": self.reason, "detail": self.detail}
        return {
            "path": self.path,
            "ok": True,
            "top": [{"class": i, "name": n, "score": round(s, 6)} for i, n, s in self.top],
        }


def _read(
    paths: Iterable[str], source: ModelSource, clips: int, crops: int
) -> Iterator[tuple[str, Tensor | DecodeError]]:
    for p in paths:
        try:
            yield (
                p,
                load_views(
                    p,
                    geometry=source.geometry,
                    clips=clips,
                    crops=crops,
                    crop_size=source.crop_size,
                    short_side=source.short_side,
                ),
            )
        except DecodeError as e:
            yield p, e


def predict(
    paths: list[str],
    source: ModelSource,
    *,
    topk: int = 5,
    batch_size: int = 4,
    clips: int | None = None,
    crops: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[Prediction]:
    """One :class:`Prediction` per path, in order. ``clips``/``crops`` default to the source's test views."""
    clips = clips or source.test_clips
    crops = crops or source.test_crops
    if batch_size < 1:
        raise VidpriorError(f"--batch-size {batch_size}: expected 1 or more")
    model = source.model.to(device).eval()
    names = source.class_names
    results: dict[str, Prediction] = {}
    pending: list[tuple[str, Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.stack([v for _, v in pending]).to(device)  # (B, V, C, T, H, W)
        with torch.no_grad():
            scores = view_scores(model, x)
        k = min(topk, scores.shape[1])
        top = scores.topk(k, dim=1)
        for (p, _), idx, val in zip(pending, top.indices.tolist(), top.values.tolist()):
            results[p] = Prediction(
                p, True, [(i, names[i] if names and i < len(names) else str(i), s) for i, s in zip(idx, val)]
            )
        pending.clear()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="predicting", unit="video", dynamic_ncols=True)
    for p, item in _read(paths, source, clips, crops):
        if isinstance(item, DecodeError):
            results[p] = Prediction(p, False, reason=item.reason, detail=item.detail)
        else:
            pending.append((p, item))
            if len(pending) == batch_size:
                flush()
        if bar:
            bar.update()
    flush()
    if bar:
        bar.close()
    return [results[p] for p in paths]


def format_table(preds: list[Prediction]) -> str:
    lines = []
    width = min(60, max(len(p.path) for p in preds)) if preds else 0
    for p in preds:
        if p.ok:
            tops = "  ".join(f"{name} {score:.3f}" for _, name, score in p.top)
            lines.append(f"{p.path:<{width}}  {tops}")
        else:
            lines.append(f"{p.path:<{width}}  FAILED {p.reason}: {p.detail}")
    return "\n".join(lines)
