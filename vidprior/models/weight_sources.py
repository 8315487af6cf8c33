"""Where a model's initial weights come from: a small explicit table, name -> loader.

``init.source`` in a run's configuration is one of :data:`SOURCE_NAMES`:

* ``scratch`` -- the model's own initialisation, nothing is read;
* ``image`` -- a checkpoint of the model's image view (``pretrain``), inflated into the 3D kernels with
  ``init.mode`` (paper §3.2, Table 9);
* ``video`` -- a checkpoint of the same 3D model (fine-tuning on another video data set, probing);
* ``official`` -- the authors' released checkpoints (see :mod:`vidprior.models.checkpoints`);
* ``imagenet_resnet`` -- a torchvision / timm ImageNet ResNet-50, through the image view.

:func:`load_initial_weights` reads the file and calls the source's loader. Keys matching a glob in ``skip`` stay at
the model's initialisation for every source (an empty ``skip`` means ``["cls_head.*"]``: a new classifier).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from vidprior.errors import TransferError, VidpriorError, closest
from vidprior.layers.sts import STSConv3d
from vidprior.models.checkpoints import load_imagenet_resnet, load_official
from vidprior.models.inflate import InflateMode, TransferReport, inflate_state_dict, inflate_weight
from vidprior.models.side_taps import SIDE_TAPS, add_side_taps, resolve_scale

DEFAULT_SKIP: tuple[str, ...] = ("cls_head.*",)


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets besides the model: the file's tensors, its path (for messages) and the init options."""

    state: Mapping[str, Tensor]
    path: str
    mode: InflateMode
    skip: tuple[str, ...]
    kept_rows: dict[str, int] = field(default_factory=dict)  # STS image kernels: static filters kept as learned


Loader = Callable[[nn.Module, LoadRequest], TransferReport]


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _layer_of(model: nn.Module, key: str) -> nn.Module | None:
    name, _, leaf = key.rpartition(".")
    if leaf != "weight":
        return None
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _image_kernels_3d(model: nn.Module, req: LoadRequest, state: dict[str, Tensor], report: TransferReport) -> None:
    """An image checkpoint of an STS model holds its STS kernels whole (5-D, see ``ImageSTSConv``): the static
    filters learned all three slices as spatial taps and keep them where the model's layer is STS too; every other
    filter (the dynamic ones, or all of a layer without STS) met images with its centre slice only and is inflated
    from it with ``init.mode`` like a 2D kernel."""
    for key in list(report.copied):
        value = state[key]
        if value.dim() != 5 or value.shape[2] == 1:
            continue
        layer = _layer_of(model, key)
        keep = layer.num_static if isinstance(layer, STSConv3d) else 0
        new = value.clone()
        new[keep:] = inflate_weight(value[keep:, :, value.shape[2] // 2], value.shape[2], req.mode)
        state[key] = new
        req.kept_rows[key] = keep
        report.copied.remove(key)
        report.inflated.append(key)


def _load_image(model: nn.Module, req: LoadRequest) -> TransferReport:
    state, report = inflate_state_dict(req.state, model, mode=req.mode, skip=req.skip)
    _image_kernels_3d(model, req, state, report)
    model.load_state_dict(state, strict=False)
    return report


def _load_video(model: nn.Module, req: LoadRequest) -> TransferReport:
    """Same architecture: every tensor the model has, with its shape, except those matching ``skip`` (left at the
    model's initialisation whether or not the checkpoint has them)."""
    own = model.state_dict()
    report = TransferReport()
    keep: dict[str, Tensor] = {}
    missing = []
    for key, value in own.items():
        if _matches(key, req.skip):
            report.skipped[key] = "matches skip; kept at initialisation"
        elif key in req.state and req.state[key].shape == value.shape:
            keep[key] = req.state[key]
            report.copied.append(key)
        else:
            have = req.state.get(key)
            missing.append(key if have is None else f"{key} (file {tuple(have.shape)}, model {tuple(value.shape)})")
    if missing:
        raise TransferError(
            f"{req.path}: the video checkpoint lacks or mis-shapes {len(missing)} tensor(s) of the model: "
            f"{', '.join(missing[:10])}; list keys to leave at initialisation in init.skip"
        )
    model.load_state_dict(keep, strict=False)
    return report


def _load_official(model: nn.Module, req: LoadRequest) -> TransferReport:
    return load_official(model, req.state, init=req.mode)


def _load_imagenet_resnet(model: nn.Module, req: LoadRequest) -> TransferReport:
    return load_imagenet_resnet(model, req.state, init=req.mode)


# name -> loader; ``scratch`` has none (nothing is read)
WEIGHT_SOURCES: dict[str, Loader | None] = {
    "scratch": None,
    "image": _load_image,
    "video": _load_video,
    "official": _load_official,
    "imagenet_resnet": _load_imagenet_resnet,
}
SOURCE_NAMES: tuple[str, ...] = tuple(WEIGHT_SOURCES)


def load_initial_weights(
    model: nn.Module,
    *,
    source: str,
    path: str | None = None,
    mode: InflateMode = "center",
    skip: Sequence[str] = (),
    side_taps: str = "zero",
    side_taps_scale: float | str = "auto",
) -> TransferReport | None:
    """Load ``model``'s initial weights from ``path`` as ``source`` describes (see the module doc).

    ``side_taps``: ``"zero"`` leaves the inflated kernels as ``mode`` makes them; ``"random"`` adds the model's own
    initialisation of their side slices scaled by ``side_taps_scale`` (a number, or ``"auto"``: the weight-decay
    shrink of the checkpoint's recorded schedule), see :mod:`vidprior.models.side_taps`.

    Returns the loader's report (``None`` for ``scratch``). Raises :class:`~vidprior.errors.VidpriorError` for an
    unknown source or a missing path, :class:`~vidprior.errors.TransferError` for weights that do not fit.
    """
    if source not in WEIGHT_SOURCES:
        raise VidpriorError(f"init.source={source!r}{closest(source, SOURCE_NAMES)}; expected one of {SOURCE_NAMES}")
    loader = WEIGHT_SOURCES[source]
    if side_taps not in SIDE_TAPS:
        raise VidpriorError(f"init.side_taps={side_taps!r}{closest(side_taps, SIDE_TAPS)}; expected one of {SIDE_TAPS}")
    if loader is None:
        return None
    if path is None:
        raise VidpriorError(f"init.checkpoint is required for init.source={source!r}")
    from vidprior.utils.io import load_state_dict_file

    scale = resolve_scale(side_taps_scale, path) if side_taps == "random" else 0.0
    state = load_state_dict_file(path)
    mode = mode if isinstance(mode, (str, Mapping)) else tuple(mode)
    req = LoadRequest(state=state, path=str(path), mode=mode, skip=tuple(skip) or DEFAULT_SKIP)
    own = {}  # the model's own initialisation of every kernel with side slices, for side_taps=random
    if side_taps == "random":
        own = {k: v.clone() for k, v in model.state_dict().items() if v.dim() == 5 and v.shape[2] > 1}
    report = loader(model, req)
    if side_taps == "random":
        sd = model.state_dict()
        new = {
            k: add_side_taps(sd[k], own[k], scale, first_row=req.kept_rows.get(k, 0))
            for k in report.inflated
            if k in own
        }
        model.load_state_dict(new, strict=False)
    return report
