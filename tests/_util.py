"""Helpers shared by the test files."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from torch import nn


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (the zero-initialised residual BNs included) and conv / linear
    biases, so that equivalence tests cannot pass through identity BNs or zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (nn.Conv3d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


COLORS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 220, 50)]


def write_color_video(path, label: int, num_frames: int = 16, size: int = 32, seed: int = 0, codec: str = "libx264"):
    """A small real video whose class is its colour (plus noise and a moving bar), for end-to-end training."""
    import av
    import numpy as np

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(num_frames):
            frame = np.empty((size, size, 3), np.uint8)
            frame[:] = COLORS[label % len(COLORS)]
            noise = rng.integers(-30, 30, size=(size, size, 3))
            frame = np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8)
            frame[:, (2 * t) % size] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_color_image(path, label: int, size: int = 32, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = COLORS[label % len(COLORS)]
    img = np.clip(img.astype(int) + rng.integers(-30, 30, size=img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m vidprior ARGS`` in a real subprocess, offline, one thread."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vidprior", *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )
