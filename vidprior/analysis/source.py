"""Where a model comes from: a run folder, a weights file, an authors' checkpoint, or a torchvision video model.

:func:`load_source` turns what a user types into a model in eval mode plus what the tools need to feed it (clip
geometry, the test views of its recipe, class names):

* a **run folder** (``config.yaml`` + ``best.safetensors`` or ``checkpoints/step_*/model.safetensors``): the model of
  its recipe with the best weights (else the newest checkpoint's), and the recipe's test views and class names;
* a **weights file** (``.safetensors``, ``.pth``) with ``--model NAME``: vidprior's own names, or the authors'
  released checkpoints (mmaction2 names load as they are; timm-based pre-training names are renamed as
  :func:`vidprior.models.checkpoints.load_official` does);
* a **registered model name** (``slowonly_tiny``): freshly initialised, for export and profiling;
* ``torchvision:NAME`` (``torchvision:r3d_18``, ``r2plus1d_18``, ``mc3_18``, ...), optionally with a weights file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from vidprior.errors import VidpriorError

TORCHVISION = "torchvision:"
_HEAD_KEYS = ("cls_head.fc_cls.weight", "cls_head.fc2.weight", "classifier.weight", "fc.weight")


@dataclass
class ModelSource:
    """A model ready for inference and how to feed it."""

    model: nn.Module
    name: str  # the architecture: a registered name or torchvision:NAME
    origin: str  # "run", "weights", "official", "init", "torchvision"
    weights: str | None = None
    geometry: str = "8x8"  # frames x sampling interval, or segN
    test_clips: int = 1
    test_crops: int = 1
    crop_size: int = 224
    short_side: int = 256
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        from vidprior.data.sampling import make_sampler

        return make_sampler(self.geometry).frames


def _num_classes(state: dict[str, Tensor]) -> int | None:
    for key in _HEAD_KEYS:
        if key in state and state[key].dim() == 2:
            return int(state[key].shape[0])
    return None


def _weights_of_run(run: Path) -> Path:
    best = run / "best.safetensors"
    if best.is_file():
        return best
    from vidprior.engine.checkpoint import WEIGHTS, find_latest

    latest = find_latest(run)
    if latest is None:
        raise VidpriorError(f"{run}: a run folder without best.safetensors or a complete checkpoint; train it first")
    return Path(latest.path) / WEIGHTS


def _from_run(run: Path, sts: bool | str | None) -> ModelSource:
    from vidprior.engine.config import InitCfg, load_config
    from vidprior.engine.tasks import build_model
    from vidprior.utils.io import load_state_dict_file

    cfg = load_config(run / "config.yaml")
    if sts is not None:
        cfg.model.sts = sts
    cfg = dataclasses.replace(cfg, init=InitCfg())  # every tensor comes from the run's weights
    model = build_model(cfg)
    weights = _weights_of_run(run)
    _load_strict(model, load_state_dict_file(weights), weights, cfg.model.name)
    d = cfg.data
    names = None
    if d.classes and Path(d.classes).is_file():
        from vidprior.data.lists import read_class_names

        names = read_class_names(d.classes)
    multi = d.test_clips > 1 or d.test_crops > 1
    return ModelSource(
        model=model.eval(),
        name=cfg.model.name,
        origin="run",
        weights=str(weights),
        geometry=d.geometry,
        test_clips=d.test_clips,
        test_crops=d.test_crops,
        crop_size=d.test_crop_size if multi else d.crop_size,
        short_side=d.test_short_side,
        class_names=names,
    )


def _load_strict(model: nn.Module, state: dict[str, Tensor], path: Path | str, name: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise VidpriorError(
            f"{path}: does not match {name}: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {shapes[:3]}; "
            "check --model"
        )
    model.load_state_dict(state)


def torchvision_model(name: str, num_classes: int = 400) -> nn.Module:
    """A torchvision video classifier by name (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ...), untrained."""
    from torchvision.models import video

    builder = getattr(video, name, None)
    if name.startswith("_") or not callable(builder) or name[0].isupper():
        choices = [n for n in video.__all__ if n[0].islower() and not n.endswith("weights")]
        raise VidpriorError(f"torchvision has no video model {name!r}; one of {', '.join(choices)}")
    return builder(weights=None, num_classes=num_classes)


def load_source(
    spec: str,
    *,
    model: str | None = None,
    num_classes: int | None = None,
    sts: bool | str | None = None,
) -> ModelSource:
    """Load ``spec`` (a run folder, a weights file, a registered model name or ``torchvision:NAME``).

    Args:
        model: the architecture of a weights file (a registered name or ``torchvision:NAME``).
        num_classes: classifier size when the weights do not say it (default: from the weights, else 400).
        sts: ``True``/``"paper"``/``"all"`` to put STS into a vidprior model, ``False`` to keep plain convs;
            ``None`` keeps the run's own setting (plain convs for files and names).
    """
    from vidprior.models import apply_sts, create_model
    from vidprior.utils.io import load_state_dict_file

    path = Path(spec)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise VidpriorError(f"{path}: not a run folder (no config.yaml); give a run folder or a weights file")
        return _from_run(path, sts)
    arch = model
    state: dict[str, Tensor] | None = None
    if spec.startswith(TORCHVISION) or (not path.exists() and "/" not in spec and "." not in spec):
        arch = spec  # a name: random initialisation
    elif path.is_file():
        if arch is None:
            raise VidpriorError(
                f"{spec}: a weights file needs --model NAME (see `vidprior models`, or torchvision:NAME)"
            )
        state = load_state_dict_file(path)
    else:
        raise VidpriorError(f"{spec}: no such run folder, weights file or model name")
    n = num_classes or (_num_classes(state) if state else None) or 400
    if arch.startswith(TORCHVISION):
        if sts:
            raise VidpriorError("--sts applies to vidprior models; torchvision's models have no STS placement")
        net = torchvision_model(arch[len(TORCHVISION) :], n)
        if state is not None:
            _load_strict(net, state, spec, arch)
        return ModelSource(net.eval(), arch, "torchvision", spec if state is not None else None, geometry="16x4")
    net = create_model(arch, num_classes=n)
    origin = "init"
    if state is not None:
        if any(k.startswith(("get_feature.", "fc1.", "classifier.")) for k in state):
            from vidprior.models.checkpoints import load_official

            report = load_official(net, state)
            origin = "official"
            notes = [f"{k}: {why}" for k, why in report.skipped.items()]
        else:
            _load_strict(net, state, spec, arch)
            origin, notes = "weights", []
    else:
        notes = ["random initialisation (no weights given)"]
    if sts:
        apply_sts(net, sts)
    frames, interval = net.default_clip
    return ModelSource(
        net.eval(), arch, origin, spec if state is not None else None, geometry=f"{frames}x{interval}", notes=notes
    )


SOURCE_HELP = "run folder, weights file (.safetensors/.pth, with --model), model name or torchvision:NAME"


def add_source_arguments(parser, *, positional: bool = True) -> None:
    """The arguments every tool takes to name its model (``source`` positional, or ``-w/--weights``)."""
    if positional:
        parser.add_argument("source", help=SOURCE_HELP)
    else:
        parser.add_argument("-w", "--weights", dest="source", required=True, help=SOURCE_HELP)
    parser.add_argument("--model", help="architecture of a weights file: a `vidprior models` name or torchvision:NAME")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size if the weights do not say")
    parser.add_argument(
        "--sts", choices=["paper", "all", "none"], default=None, help="STS placement (default: the run's own; none)"
    )


def add_view_arguments(parser) -> None:
    """Clip geometry and crop size, overriding the source's own (a run's recipe, else the model's clip at 224)."""
    parser.add_argument("--geometry", default=None, help="clip: FRAMESxINTERVAL or segN (default: the model's)")
    parser.add_argument("--crop-size", type=int, default=None, help="crop size; frames are resized to it first")


def apply_view_arguments(source: ModelSource, args) -> ModelSource:
    if getattr(args, "geometry", None):
        from vidprior.data.sampling import make_sampler

        make_sampler(args.geometry)  # a bad geometry fails here, with its message
        source.geometry = args.geometry
    if getattr(args, "crop_size", None):
        if args.crop_size < 1:
            raise VidpriorError(f"--crop-size {args.crop_size}: expected a positive size")
        source.crop_size = source.short_side = args.crop_size
    return source


def sts_arg(value: str | None) -> bool | str | None:
    return {None: None, "none": False, "paper": True, "all": "all"}[value]


def source_from_args(args) -> ModelSource:
    return load_source(args.source, model=args.model, num_classes=args.num_classes, sts=sts_arg(args.sts))
