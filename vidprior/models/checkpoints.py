"""Weights users already have: the authors' released checkpoints, and ImageNet ResNet-50s.

* The authors' fine-tuned checkpoints (mmaction2 0.x: ``backbone.*``, ``cls_head.*``) use vidprior's own names:
  they load with ``model.load_state_dict`` directly. Their image pre-training checkpoints (timm-based: backbone
  ``get_feature.*``, classifier ``classifier.*``, X3D also ``fc1.*``) differ by a prefix:
  :func:`load_official` renames (``get_feature.`` -> ``backbone.``, ``fc1.`` -> ``cls_head.fc1.``,
  ``classifier.`` -> the model's classifier) and loads (docs/method.md).
* ImageNet ResNet-50 state dicts in torchvision or timm naming (``conv1``, ``bn1``, ``layer1.0.conv1``,
  ``layer1.0.downsample.0``, ``fc``) load into the image view of ``slowonly50`` / ``resnet50_3x1x1`` and the slow
  pathway of SlowFast, and from there inflate into the 3D model: :func:`load_imagenet_resnet`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vidprior.errors import TransferError
from vidprior.models.image_view import image_model, is_image_view
from vidprior.models.inflate import InflateMode, TransferReport, deflate_weight, inflate_state_dict, inflate_weight


def _classifier_name(model: nn.Module) -> str:
    head = getattr(model, "cls_head", None)
    if head is None:
        raise TransferError("the model has no `cls_head`; expected a vidprior VideoClassifier")
    return f"cls_head.{head.classifier}"


def official_to_vidprior(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename the authors' timm-based pre-training keys to vidprior's (mmaction2) names; other keys pass."""
    cls = _classifier_name(model)
    rules = [
        (r"^module\.", ""),
        (r"^get_feature\.", "backbone."),
        (r"^fc1\.", "cls_head.fc1."),
        (r"^classifier\.", f"{cls}."),
    ]
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def load_official(model: nn.Module, state: Mapping[str, Tensor], *, init: InflateMode | None = None) -> TransferReport:
    """Load an authors' checkpoint (either naming) into a vidprior model of the same architecture.

    Every backbone tensor must be present with its shape (else :class:`TransferError` lists the keys). Head tensors
    whose shape differs (a 1000-way ImageNet classifier into a 400-way model) or that the model lacks (X3D's
    ``fc1.bias``, which mmaction2's head does not have) are skipped and reported, as the authors' own loader did.

    Args:
        init: re-initialise every 3D kernel from its centre temporal slice with this inflation mode
            (``"center"`` zeroes the side taps: the paper's zero-init; ``"mean"``; rates such as
            ``(1/9, 1/3, 1/9)``). ``None`` keeps the checkpoint's kernels as they are (the authors' ``inflate=False``).
    """
    src = official_to_vidprior(state, model)
    target = model.state_dict()
    report = TransferReport()
    missing = [k for k in target if k not in src and not k.startswith("cls_head.")]
    bad = [
        f"{k}: checkpoint {tuple(src[k].shape)} vs model {tuple(v.shape)}"
        for k, v in target.items()
        if k in src and not k.startswith("cls_head.") and src[k].shape != v.shape
    ]
    if missing or bad:
        raise TransferError(
            "checkpoint does not match the model's backbone:"
            + (f"\n  missing ({len(missing)}): {', '.join(missing[:20])}" if missing else "")
            + (f"\n  shapes ({len(bad)}): {'; '.join(bad[:20])}" if bad else "")
        )
    load = {}
    for key, value in src.items():
        if key not in target:
            report.skipped[key] = "not in the model"
        elif value.shape != target[key].shape:
            report.skipped[key] = f"shape {tuple(value.shape)} vs model {tuple(target[key].shape)}"
        else:
            if init is not None and value.dim() == 5 and value.shape[2] > 1:
                value = inflate_weight(deflate_weight(value, "center"), value.shape[2], init)
                report.inflated.append(key)
            else:
                report.copied.append(key)
            load[key] = value
    for key in target:
        if key.startswith("cls_head.") and key not in load:
            report.skipped.setdefault(key, "not in the checkpoint (kept at initialisation)")
    model.load_state_dict(load, strict=False)
    return report


_RESNET_RULES = [
    (r"^conv1\.weight$", "conv1.conv.weight"),
    (r"^bn1\.", "conv1.bn."),
    (r"^(layer\d\.\d+)\.conv(\d)\.weight$", r"\1.conv\2.conv.weight"),
    (r"^(layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.bn."),
    (r"^(layer\d\.\d+)\.downsample\.0\.", r"\1.downsample.conv."),
    (r"^(layer\d\.\d+)\.downsample\.1\.", r"\1.downsample.bn."),
]


def resnet_to_vidprior(state: Mapping[str, Tensor], prefix: str = "backbone.") -> dict[str, Tensor]:
    """Rename a torchvision/timm ResNet state dict to vidprior's backbone names (``fc`` -> ``cls_head.fc_cls``)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^module\.", "", key)
        if key.startswith("fc."):
            out["cls_head.fc_cls." + key[3:]] = value
            continue
        for pattern, repl in _RESNET_RULES:
            new = re.sub(pattern, repl, key)
            if new != key:
                key = prefix + new
                break
        else:
            key = "unmapped." + key
        out[key] = value
    return out


def load_imagenet_resnet(
    model: nn.Module, state_2d: Mapping[str, Tensor], *, init: InflateMode = "center"
) -> TransferReport:
    """Load an ImageNet ResNet-50 (torchvision or timm names) into a SlowOnly-style model or SlowFast's slow path.

    ``model`` may be the 3D model or its image view. Tensors whose shapes differ (SlowFast's first blocks take
    extra lateral channels; a classifier of another size) are reported in ``skipped``, not forced; tensors the 2D
    network lacks (the fast pathway, laterals) keep the model's own values and are reported too. For a 3D model
    the loaded tensors are inflated with ``init`` (default: centre slice, the paper's zero-init).
    """
    is_view = is_image_view(model)
    view = model if is_view else image_model(model)
    prefix = "backbone.slow_path." if hasattr(getattr(view, "backbone", None), "slow_path") else "backbone."
    src = resnet_to_vidprior(state_2d, prefix)
    unmapped = [k[len("unmapped.") :] for k in src if k.startswith("unmapped.")]
    if unmapped:
        raise TransferError(f"not a torchvision/timm ResNet state dict: cannot map {unmapped[:10]}")
    target = view.state_dict()
    report = TransferReport()
    load = {}
    for key, value in src.items():
        if key not in target:
            raise TransferError(f"{key!r} (from the ResNet checkpoint) does not exist in the model; is it a ResNet-50?")
        if value.shape != target[key].shape:
            report.skipped[key] = f"shape {tuple(value.shape)} in the checkpoint vs {tuple(target[key].shape)}"
            continue
        load[key] = value
        report.copied.append(key)
    for key in target:
        if key not in src:
            report.skipped[key] = "not in the 2D checkpoint (kept)"
    view.load_state_dict(load, strict=False)
    if is_view:
        return report
    state_3d, _ = inflate_state_dict(view.state_dict(), model, mode=init)
    with torch.no_grad():
        model.load_state_dict({k: state_3d[k] for k in load}, strict=False)
    report.inflated = [k for k in load if state_3d[k].dim() == 5]
    return report
