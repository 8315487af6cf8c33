"""Channels-last for whole models whose weights mix 4-D and 5-D tensors."""

from __future__ import annotations

import torch
from torch import nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every 4-D parameter and buffer in ``channels_last`` and every 5-D one in ``channels_last_3d``, in place
    (before an optimizer sees them). ``model.to(memory_format=...)`` takes one format and fails on the other rank: an
    image view keeps the 5-D weights of its STS layers beside 4-D convolutions."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.dim() in (4, 5):
            t.data = t.data.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    return model
