"""Grad-CAM for video models (paper Fig. 1): one heat map per frame of a clip.

The maps come from ``pytorch_grad_cam`` (the ``grad-cam`` package), which handles 5-D activations
``(N, C, T', H', W')``: channel weights are the gradients averaged over time and space, the map is
``relu(sum_c w_c * A_c)`` over ``(T', H', W')``, scaled to 0..1 over the whole clip and resized to the clip's
``(T, H, W)`` with a cubic spline (tests/test_tool_gradcam.py checks this against a hand computation). For a slice
network (``tap=-1|0|1``: the 2D network holding one temporal slice of every 3D kernel, the paper's t1/t2/t3) each
frame goes through the 2D network on its own and gets its own 2-D map, computed here (see :func:`_frame_cams`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from vidprior.errors import VidpriorError

_POOLS = (
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def default_layers(model: nn.Module, sample: Tensor) -> list[str]:
    """The last stage of each pathway: the outermost modules whose outputs are exactly what the backbone returns
    (one tensor, or one per pathway for SlowFast). For a model without a ``backbone`` (torchvision's), the outermost
    non-pooling module with a spatial output (4-D or 5-D) that completes last in a forward pass of ``sample``."""
    names = {id(m): n for n, m in model.named_modules()}
    backbone = getattr(model, "backbone", None)
    order: list[tuple[str, Tensor]] = []
    returned: list[Tensor] = []
    hooks = []

    def hook(module: nn.Module, _inp, out) -> None:
        spatial = isinstance(out, Tensor) and out.dim() == sample.dim()
        if module is backbone:
            returned.extend(out if isinstance(out, (tuple, list)) else [out])
        elif module is not model and not isinstance(module, _POOLS) and spatial:
            order.append((names[id(module)], out))

    for m in model.modules():
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    if returned:
        found = []
        for t in returned:
            producers = [n for n, out in order if out is t]  # the stage and the leaf inside it that made t
            if producers:
                found.append(min(producers, key=len))
        if found:
            return found
    if not order:
        raise VidpriorError("found no layer with a spatial output to take Grad-CAM from; name one with --layer")
    last, out = order[-1]
    producers = [n for n, o in order if o is out]  # a final ReLU inside the stage returns the stage's output too
    return [min(producers, key=len)] if producers else [last]


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        convs = [n for n, m in model.named_modules() if n.count(".") <= 2 and n]
        from vidprior.errors import closest

        raise VidpriorError(f"--layer {name!r}: no such module{closest(name, convs)}") from None


@dataclass
class CamResult:
    maps: np.ndarray  # (T, H, W) float32 in 0..1
    target: int  # class explained
    predicted: int
    layers: list[str]
    tap: int | None


def gradcam(
    model: nn.Module,
    clip: Tensor,
    *,
    target: int | None = None,
    layer: str | list[str] | None = None,
    tap: int | None = None,
) -> CamResult:
    """Grad-CAM of ``clip`` ``(C, T, H, W)`` for class ``target`` (default: the predicted class).

    ``tap``: explain the slice network (:func:`vidprior.image_model` with that tap) frame by frame instead of the
    3D model. ``layer``: a module name or several (their maps, each scaled to 0..1, are averaged; default:
    :func:`default_layers`)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = model.eval()
    if tap is not None:
        from vidprior.models import image_model

        net = image_model(model, tap=tap).eval()
        x = clip.permute(1, 0, 2, 3).contiguous()  # (C, T, H, W) -> (T, C, H, W): each frame is one image
        with torch.no_grad():
            logits = net(x).float().mean(0)  # frames' logits averaged: the clip's class for the slice network
    else:
        net = model
        x = clip.unsqueeze(0)  # (1, C, T, H, W)
        with torch.no_grad():
            logits = net(x).float()[0]
    predicted = int(logits.argmax())
    cls = predicted if target is None else int(target)
    if not 0 <= cls < logits.shape[-1]:
        raise VidpriorError(f"--class {cls}: the model has classes 0..{logits.shape[-1] - 1}")
    names = [layer] if isinstance(layer, str) else list(layer or default_layers(net, x[:1]))
    modules = [_module(net, n) for n in names]
    if tap is None:
        with GradCAM(model=net, target_layers=modules) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])  # (1, T, H, W), 0..1 over the clip
        maps = np.asarray(maps, dtype=np.float32)[0]
    else:
        maps = np.mean([_frame_cams(net, m, x, cls) for m in modules], axis=0)
    return CamResult(maps=np.clip(maps, 0.0, 1.0), target=cls, predicted=predicted, layers=names, tap=tap)


def _frame_cams(net: nn.Module, layer: nn.Module, frames: Tensor, cls: int) -> np.ndarray:
    """Grad-CAM of each frame ``(T, C, H, W)`` through a 2D network, scaled to 0..1 over the whole clip.

    Written here rather than taken from ``pytorch_grad_cam``: for 4-D input the library scales each image's map to
    0..1 on its own, so the frames of one clip could not be compared, and a map of one pixel per frame (the last
    stage of a small input) becomes all zeros."""
    store: dict[str, Tensor] = {}

    def keep(_m, _i, out: Tensor) -> None:
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    handle = layer.register_forward_hook(keep)
    try:
        x = frames.clone().requires_grad_(True)
        net.zero_grad(set_to_none=True)
        net(x)[:, cls].sum().backward()  # each frame's logit reaches only its own activations
    finally:
        handle.remove()
    act, grad = store["act"].detach(), store["grad"]  # (T, C', H', W')
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (T, C', 1, 1): gradients averaged over the frame
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True))  # (T, 1, H', W')
    cam = nn.functional.interpolate(cam, size=frames.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.min()
    return (cam / cam.max().clamp_min(1e-7)).numpy().astype(np.float32)  # (T, H, W)


def display_frames(clip: Tensor) -> np.ndarray:
    """Undo the ImageNet normalisation: (C, T, H, W) float -> (T, H, W, 3) float in 0..1."""
    from vidprior.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (clip.float() * std + mean).clamp(0, 1).permute(1, 2, 3, 0).numpy()


def save_outputs(frames: np.ndarray, result: CamResult, out: str | Path, *, title: str = "") -> dict[str, str]:
    """Write ``gradcam.npy`` (T, H, W), ``gradcam_grid.png`` (frames x [frame, map, overlay]) and
    ``gradcam.gif`` (the overlays, animated). Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "gradcam.npy", result.maps)
    overlays = [show_cam_on_image(f.astype(np.float32), m, use_rgb=True) for f, m in zip(frames, result.maps)]
    t = len(frames)
    fig, axes = plt.subplots(t, 3, figsize=(6, 2 * t), squeeze=False)
    for i in range(t):
        for j, (img, label) in enumerate(
            ((frames[i], "frame"), (result.maps[i], "Grad-CAM"), (overlays[i], "overlay"))
        ):
            ax = axes[i, j]
            ax.imshow(img, cmap="jet" if j == 1 else None, vmin=0, vmax=1)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "gradcam_grid.png", dpi=80)
    plt.close(fig)
    images = [Image.fromarray(o) for o in overlays]
    images[0].save(out / "gradcam.gif", save_all=True, append_images=images[1:], duration=200, loop=0)
    return {
        k: str(out / f)
        for k, f in (("maps", "gradcam.npy"), ("grid", "gradcam_grid.png"), ("animation", "gradcam.gif"))
    }
