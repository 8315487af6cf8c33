"""Mixup / CutMix for video batches (B, C, T, H, W), with one CutMix box shared by every frame.

Written here instead of calling a library, because neither fits a 5-D batch:

* ``timm.data.Mixup`` draws the box for the last two dims but pastes ``x[:, :, yl:yh, xl:xh]``, i.e. it cuts
  (T, H) of a 5-D tensor: the pasted area is not the label weight (tests/test_data_mixup.py shows it). A reshape to
  (B, C*T, H, W) fixes that, but timm also refuses odd batch sizes and draws from numpy's global RNG.
* ``torchvision.transforms.v2.CutMix`` raises on 5-D input.

The algorithm is timm's "batch" mode (the official recipe: prob 1.0, switch prob 0.5): one lambda and one box per
batch, sample ``i`` mixed with sample ``B - 1 - i`` (the batch flipped), the box from timm's ``rand_bbox`` (side
``sqrt(1 - lam)`` of H and W, centre uniform, clipped at the border) and lambda corrected to the clipped box, so the
label weight of the partner equals the pasted area exactly. Random draws come from torch's global RNG (reproducible
under ``torch.manual_seed``). The input batch is not modified in place.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor

from vidprior.errors import VidpriorError

__all__ = ["VideoMixup", "cutmix_box", "soft_targets"]

X = TypeVar("X", Tensor, list[Tensor], tuple[Tensor, ...])


def soft_targets(labels: Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0) -> Tensor:
    """``lam * y + (1 - lam) * y.flip(0)`` for smoothed one-hot ``y`` (on value ``1 - s + s/K``, off value ``s/K``),
    as timm's ``mixup_target``. Rows sum to 1. Float32 (B, num_classes) on the labels' device."""
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise VidpriorError(
            f"mixup: expected integer class labels of shape (B,), got {labels.dtype} {tuple(labels.shape)}"
        )
    if bool(((labels < 0) | (labels >= num_classes)).any()):  # one host sync; scatter_ would fail obscurely on GPU
        raise VidpriorError(f"mixup: labels must be in [0, {num_classes}), got {labels.tolist()}")
    off = smoothing / num_classes
    y = torch.full((labels.numel(), num_classes), off, dtype=torch.float32, device=labels.device)
    y.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)
    return y * lam + y.flip(0) * (1.0 - lam) if lam != 1.0 else y


def cutmix_box(height: int, width: int, lam: float) -> tuple[tuple[int, int, int, int], float]:
    """timm's ``rand_bbox`` + lambda correction: a box ``(y0, y1, x0, x1)`` of side ``sqrt(1 - lam)`` of each
    dimension around a uniform centre, clipped to the frame, and ``1 - area / (H * W)`` of the clipped box."""
    r = math.sqrt(1.0 - lam)
    ch, cw = int(height * r), int(width * r)
    cy, cx = int(torch.randint(0, height, ())), int(torch.randint(0, width, ()))
    y0, y1 = min(max(cy - ch // 2, 0), height), min(max(cy + (ch + 1) // 2, 0), height)
    x0, x1 = min(max(cx - cw // 2, 0), width), min(max(cx + (cw + 1) // 2, 0), width)
    return (y0, y1, x0, x1), 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)


class VideoMixup:
    """Mixup or CutMix on a video batch; returns ``(mixed clips, soft targets (B, num_classes))``.

    Per batch: with probability ``prob`` the batch is mixed (otherwise only the label smoothing applies); CutMix is
    chosen with probability ``switch_prob`` when both alphas are positive. Mixup blends every frame with the same
    lambda ~ Beta(mixup_alpha); CutMix pastes the same box (all channels and frames) from the partner clip, lambda ~
    Beta(cutmix_alpha) corrected to the clipped box. The box covers the last two dims, so (B, C, T, H, W) clips, (B, C,
    H, W) images, and SlowFast's [slow, fast] pathway lists (same B, H, W; mixed alike) all work. Odd batch sizes
    work: the middle sample is paired with itself (its pixels and its label stay its own).

    Set ``enabled = False`` to switch mixing off (e.g. for the last epochs); label smoothing still applies.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise VidpriorError(f"num_classes={num_classes!r}: expected a positive integer")
        if mixup_alpha < 0 or cutmix_alpha < 0 or (mixup_alpha == 0 and cutmix_alpha == 0):
            raise VidpriorError(
                f"mixup_alpha={mixup_alpha}, cutmix_alpha={cutmix_alpha}: both >= 0 and at least one > 0 "
                "(to train without mixing, do not build a VideoMixup)"
            )
        for name, v in (("prob", prob), ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
            if not 0.0 <= v <= 1.0:
                raise VidpriorError(f"{name}={v}: expected a value in [0, 1]")
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob, self.label_smoothing = float(prob), float(switch_prob), float(label_smoothing)
        self.enabled = True

    def __repr__(self) -> str:
        return (
            f"VideoMixup(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, switch_prob={self.switch_prob}, "
            f"label_smoothing={self.label_smoothing}, enabled={self.enabled})"
        )

    def _draw(self) -> tuple[float, bool]:
        """(lam, use_cutmix) for one batch; lam == 1 means no mixing."""
        if not self.enabled or float(torch.rand(())) >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = float(torch.rand(())) < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        return lam, use_cutmix

    def __call__(self, clips: X, labels: Tensor) -> tuple[X, Tensor]:
        tensors = [clips] if isinstance(clips, Tensor) else list(clips)
        if not tensors or any(not isinstance(t, Tensor) or t.ndim < 3 for t in tensors):
            raise VidpriorError("mixup: expected a (B, C, T, H, W) tensor or a list of them")
        batch, (h, w) = tensors[0].shape[0], tensors[0].shape[-2:]
        if any(t.shape[0] != batch or t.shape[-2:] != (h, w) for t in tensors):
            raise VidpriorError(f"mixup: tensors disagree on batch or frame size: {[tuple(t.shape) for t in tensors]}")
        if labels.shape[:1] != (batch,):
            raise VidpriorError(f"mixup: {labels.shape[0] if labels.ndim else 0} labels for a batch of {batch}")
        lam, use_cutmix = self._draw()
        if lam != 1.0:
            if use_cutmix:
                (y0, y1, x0, x1), lam = cutmix_box(h, w, lam)
                mixed = []
                for t in tensors:
                    t = t.clone()
                    t[..., y0:y1, x0:x1] = t[..., y0:y1, x0:x1].flip(0)
                    mixed.append(t)
                tensors = mixed
            else:
                tensors = [t * lam + t.flip(0) * (1.0 - lam) for t in tensors]
        targets = soft_targets(labels, self.num_classes, lam, self.label_smoothing)
        if isinstance(clips, Tensor):
            return tensors[0], targets
        return type(clips)(tensors), targets  # type: ignore[return-value]
