"""Loading weight files safely: safetensors, or ``torch.load(weights_only=True)`` — never unpickling code."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch
from torch import Tensor

from vidprior.errors import VidpriorError

_WRAPPERS = ("state_dict", "model", "module", "model_state")


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a PyTorch checkpoint (``.pth``, ``.pt``, ``.pth.tar``).

    PyTorch files are read with ``weights_only=True``: tensors, containers and plain values only (plus
    ``argparse.Namespace``, which timm-based checkpoints such as the authors' carry as ``args``). A checkpoint
    wrapping its weights in ``state_dict`` / ``model`` is unwrapped, and a DDP ``module.`` prefix is removed.
    """
    p = Path(path)
    if not p.exists():
        raise VidpriorError(f"{p}: no such file")
    if not p.is_file():
        raise VidpriorError(f"{p}: not a file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise VidpriorError(f"{p}: not a readable safetensors file ({e})") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise VidpriorError(
            f"{p}: refused to load: the file needs code to be unpickled ({str(e).splitlines()[0]}). Re-save only "
            "the weights, e.g. torch.save(model.state_dict(), path) or safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise VidpriorError(f"{p}: not a readable PyTorch checkpoint ({e})") from None
    for _ in range(2):  # unwrap {"state_dict": {...}} and similar
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not all(isinstance(v, Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, dict) or not obj:
        raise VidpriorError(f"{p}: holds no state dict (found {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise VidpriorError(f"{p}: holds no tensors at the top level; keys: {list(obj)[:10]}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors
