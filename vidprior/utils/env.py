"""A report of the software environment, for bug reports and saved with runs."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

_PACKAGES = ("vidprior", "torch", "torchvision", "timm", "av", "torchcodec", "decord", "numpy", "safetensors")


def environment() -> dict[str, str]:
    """Versions of Python, the key packages and the accelerator, as strings."""
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": str(os.cpu_count())}
    for name in _PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = "not installed"
    try:
        import torch

        info["torch_threads"] = str(torch.get_num_threads())
        info["cuda_available"] = str(torch.cuda.is_available())
        if torch.cuda.is_available():
            info["cuda"] = str(torch.version.cuda)
            info["cudnn"] = str(torch.backends.cudnn.version())
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        info["torch"] = "not importable"
    return info
