"""Run configuration: typed dataclasses, read from a YAML recipe plus ``key=value`` overrides.

Unknown keys, wrong types and impossible values are refused before any data is read or any model built, with one
line naming the key, the value and the nearest valid key (:class:`ConfigError`). The resolved configuration is saved
with every run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vidprior.engine.recipes import PACKAGED_RECIPES, packaged_recipes, resolve_recipe
from vidprior.errors import ConfigError, VidpriorError, closest


@dataclass
class ModelCfg:
    name: str = "slowonly50"
    num_classes: int = 400
    sts: bool | str = False  # True / "paper": the paper's placement; "all": every eligible conv
    static_ratio: float | str = 0.5
    static_mode: str = "cross"  # allowed values of this and the other named choices: allowed_values() below
    static_dilation: int = 2
    layout: str = "zero_pad"
    dropout: float = 0.5
    overrides: dict[str, Any] = field(default_factory=dict)  # builder arguments: base_channels, stage_blocks, ...


@dataclass
class DataCfg:
    format: str = "list"  # a name in vidprior.data.formats.FORMATS (which says what each holds)
    train: str | None = None
    val: str | None = None
    test: str | None = None
    root: str | None = None
    labels: str | None = None  # SSv2 labels.json
    video_suffix: str = ".webm"  # SSv2: videos are <root>/<id><suffix>
    classes: str | None = None  # class-name file for 'path name' lists
    template: str = "img_{:05d}.jpg"  # raw frames
    geometry: str = "8x8"  # dense "FRAMESxINTERVAL" or "segN"
    test_clips: int = 10
    test_crops: Literal[1, 3] = 3
    crop_size: int = 224
    short_side: list[int] | int | None = 256  # training resize (a [min, max] pair jitters)
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area range
    test_short_side: int = 256
    test_crop_size: int = 256
    hflip: bool | None = None  # None: on for Kinetics-style data, off for SSv2 (labels have direction)
    randaugment: str | None = None
    backend: str = "pyav"
    workers: int = 4
    max_bad_fraction: float = 0.01
    decode_timeout: float | None = 60.0
    # task pretrain on a video format (list / ssv2 / rawframes; paper Table 8: pre-training on Kinetics frames):
    # each video gives this many samples per epoch, one random frame from each of its equal parts
    frames_per_video: int = 1


@dataclass
class InitCfg:
    source: str = "scratch"
    checkpoint: str | None = None
    mode: str | list[float] = "center"  # inflation: "center" (zero-init), "mean", or rates [a, b, c]
    skip: list[str] = field(default_factory=list)  # keys left at initialisation (e.g. "cls_head.*")
    # task pretrain: the temporal slice each 3D conv gives its 2D counterpart, as an offset from the tap that meets
    # a one-frame clip: -1, 0, 1 = the paper's t1, t2, t3 (Table 1 linear probing; 1-tap convs ignore it)
    tap: int = 0
    # side slices of inflated kernels: "zero" (as init.mode makes them; the paper's zero-init) or "random" (plus the
    # video model's own initialisation scaled by side_taps_scale: a number, or "auto" = the weight-decay shrink of the
    # image checkpoint's recorded schedule); docs/image_pretraining_sts.md
    side_taps: str = "zero"
    side_taps_scale: float | str = "auto"


@dataclass
class OptimCfg:
    name: Literal["sgd", "lamb", "adamw"] = "sgd"
    lr: float = 0.02
    base_batch_size: int | None = None  # lr is for this global batch; scaled linearly to the real one
    momentum: float = 0.9
    weight_decay: float = 1e-4
    no_weight_decay_on_norm_and_bias: bool = False
    clip_grad: float | None = 40.0
    epochs: int = 50
    warmup_epochs: float = 5
    warmup_lr: float = 1e-6
    min_lr: float = 0.0


@dataclass
class TrainCfg:
    batch_size: int = 16  # global (all processes)
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    label_smoothing: float = 0.0
    loss: Literal["ce", "bce"] = "ce"
    mixup: float = 0.0
    cutmix: float = 0.0
    ema_decay: float | None = None
    precise_bn_batches: int = 0
    val_every: int = 1
    ckpt_every_steps: int | None = None
    ckpt_every_minutes: float | None = 30.0
    keep_last: int = 3
    max_nonfinite_steps: int = 20
    sync_bn: bool = False  # SyncBatchNorm across processes (GPU only)
    norm_eval: bool = False  # keep BatchNorm in eval mode while training (frozen statistics; mmaction2's norm_eval)
    repeated_aug: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    # fnmatch patterns of the parameter names that train (e.g. ["cls_head.*"]: a linear probe); every other
    # parameter is frozen (no gradient, not in the optimizer) and every module whose parameters are all frozen runs
    # in eval mode (frozen BatchNorm statistics do not drift). null: everything trains.
    trainable: list[str] | None = None


@dataclass
class RunCfg:
    task: Literal["pretrain", "finetune", "test"] = "finetune"
    out: str = "runs/run"
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    init: InitCfg = field(default_factory=InitCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    train: TrainCfg = field(default_factory=TrainCfg)


def allowed_values() -> dict[str, tuple[str, ...]]:
    """Allowed values of the keys whose choices belong to the module that implements them."""
    from vidprior.data.backends import BACKENDS
    from vidprior.data.formats import FORMAT_NAMES
    from vidprior.layers.sts import LAYOUTS, STATIC_MODES
    from vidprior.models.weight_sources import SOURCE_NAMES

    return {
        "model.static_mode": STATIC_MODES,
        "model.layout": LAYOUTS,
        "data.format": FORMAT_NAMES,
        "data.backend": BACKENDS,
        "init.source": SOURCE_NAMES,
    }


# ------------------------------------------------------------------------------------------------ parsing
def _nearest(key: str, choices: list[str], prefix: str = "") -> str:
    m = difflib.get_close_matches(key, choices, n=1, cutoff=0.4)
    full = [f"{prefix}.{c}" if prefix else c for c in (m or choices)]
    return f"; nearest valid key: {full[0]!r}" if m else f"; valid keys: {', '.join(full)}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, bool, str, None, Literal, list, dict, unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _coerce(value, arm, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}={value!r}: expected {' or '.join(_type_name(a) for a in typing.get_args(tp))}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            raise ConfigError(
                f"{key}={value!r}: expected one of {list(allowed)}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}={value!r}: expected null")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r}: expected a string")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r}: expected a list")
        (arm,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, arm, f"{key}[{i}]") if arm is not Any else v for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r}: expected a mapping")
        return dict(value)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a bug in the dataclasses above


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise ConfigError(f"unknown key {full!r}{_nearest(str(key), names, prefix)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _set(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "model.sts=true"]`` -> nested dict (values parsed as YAML scalars/lists)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. optim.lr=0.1)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, int) and ":" in raw:  # a ratio such as 1:2 (YAML 1.1 reads it as the base-60 number 62)
            value = raw.strip()
        _set(tree, key.strip(), value)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunCfg:
    """Read a YAML recipe (``_base_: other.yaml`` entries are merged first) and apply overrides; validate."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(resolve_recipe(path))
    data = _merge(data, parse_overrides(list(overrides)))
    cfg = _build(RunCfg, data)
    validate(cfg)
    return cfg


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = data.pop("_base_", None)
    if base is not None:
        if depth > 8:
            raise ConfigError(f"{path}: _base_ chain too deep")
        data = _merge(_read_yaml((path.parent / base).resolve(), depth + 1), data)
    return data


__all__ = ["PACKAGED_RECIPES", "ConfigError", "RunCfg", "load_config", "packaged_recipes", "resolve_recipe"]


def validate(cfg: RunCfg, *, world_size: int = 1) -> None:
    """Impossible values, named with the key."""

    def need(cond: bool, key: str, value: Any, why: str) -> None:
        if not cond:
            raise ConfigError(f"{key}={value!r}: {why}")

    o, t, d, m = cfg.optim, cfg.train, cfg.data, cfg.model
    for key, allowed in allowed_values().items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        need(value in allowed, key, value, f"expected one of {list(allowed)}{closest(str(value), allowed)}")
    need(o.lr > 0, "optim.lr", o.lr, "must be > 0")
    need(o.epochs >= 1, "optim.epochs", o.epochs, "must be >= 1")
    need(
        0 <= o.warmup_epochs < o.epochs or o.warmup_epochs == 0,
        "optim.warmup_epochs",
        o.warmup_epochs,
        "must be in [0, epochs)",
    )
    need(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    need(0 <= o.momentum < 1, "optim.momentum", o.momentum, "must be in [0, 1)")
    need(o.clip_grad is None or o.clip_grad > 0, "optim.clip_grad", o.clip_grad, "must be > 0 or null")
    need(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be >= 1")
    need(
        t.batch_size % world_size == 0,
        "train.batch_size",
        t.batch_size,
        f"the global batch must divide by the number of processes ({world_size})",
    )
    need(0 <= t.label_smoothing < 1, "train.label_smoothing", t.label_smoothing, "must be in [0, 1)")
    need(t.mixup >= 0 and t.cutmix >= 0, "train.mixup/cutmix", (t.mixup, t.cutmix), "must be >= 0")
    need(t.ema_decay is None or 0 < t.ema_decay < 1, "train.ema_decay", t.ema_decay, "must be in (0, 1) or null")
    need(t.keep_last >= 1, "train.keep_last", t.keep_last, "must be >= 1")
    need(t.val_every >= 1, "train.val_every", t.val_every, "must be >= 1")
    need(t.repeated_aug >= 1, "train.repeated_aug", t.repeated_aug, "must be >= 1")
    need(m.num_classes >= 1, "model.num_classes", m.num_classes, "must be >= 1")
    need(0 <= m.dropout < 1, "model.dropout", m.dropout, "must be in [0, 1)")
    need(d.crop_size >= 1, "data.crop_size", d.crop_size, "must be >= 1")
    need(d.workers >= 0, "data.workers", d.workers, "must be >= 0")
    need(d.test_clips >= 1, "data.test_clips", d.test_clips, "must be >= 1")
    need(0 <= d.max_bad_fraction <= 1, "data.max_bad_fraction", d.max_bad_fraction, "must be in [0, 1]")
    scale_ok = len(d.scale) == 2 and 0 < d.scale[0] <= d.scale[1] <= 1
    need(scale_ok, "data.scale", d.scale, "expected [min, max] in (0, 1]")
    sides = d.short_side if isinstance(d.short_side, list) else [d.short_side] if d.short_side else []
    need(
        all(s >= 1 for s in sides) and len(sides) <= 2, "data.short_side", d.short_side, "expected a size or [min, max]"
    )
    need(
        not sides or min(sides) >= d.crop_size or cfg.task == "pretrain",
        "data.crop_size",
        d.crop_size,
        f"larger than the short-side resize {d.short_side}",
    )
    need(
        d.test_crop_size <= d.test_short_side,
        "data.test_crop_size",
        d.test_crop_size,
        "larger than data.test_short_side",
    )
    from vidprior.data.sampling import make_sampler

    try:
        make_sampler(d.geometry)
    except VidpriorError as e:
        raise ConfigError(f"data.geometry: {e}") from None
    if cfg.task in ("pretrain", "finetune"):
        need(d.train is not None, "data.train", d.train, "a training list / folder is required")
    if cfg.init.source != "scratch":
        need(
            cfg.init.checkpoint is not None,
            "init.checkpoint",
            None,
            f"required for init.source={cfg.init.source!r}: give the weights file (e.g. init.checkpoint=<your "
            "pre-training run>/best.safetensors) or start from scratch with init.source=scratch",
        )
    need(
        cfg.init.tap == 0 or cfg.task == "pretrain",
        "init.tap",
        cfg.init.tap,
        "selects the temporal slice of the 2D counterpart: only for task pretrain",
    )
    need(
        cfg.init.tap == 0 or cfg.init.source not in ("image", "imagenet_resnet"),
        "init.tap",
        cfg.init.tap,
        f"init.source={cfg.init.source!r} weights are inflated from 2D, their side slices are not learnt (the "
        "probe of paper Table 1 takes a 3D model trained on video: init.source=video)",
    )
    need(
        cfg.init.tap == 0 or not m.sts,
        "init.tap",
        cfg.init.tap,
        "temporal slices of STS convs are not temporal taps (their static channels use them in space); "
        "probe the model without STS (model.sts=false)",
    )
    from vidprior.data.formats import VIDEO_FORMATS

    video_format = d.format in VIDEO_FORMATS
    need(d.frames_per_video >= 1, "data.frames_per_video", d.frames_per_video, "must be >= 1")
    need(
        d.frames_per_video == 1 or (cfg.task == "pretrain" and video_format),
        "data.frames_per_video",
        d.frames_per_video,
        "only for task pretrain on a video format (list, ssv2, rawframes)",
    )
    if t.trainable is not None:
        need(len(t.trainable) > 0, "train.trainable", t.trainable, "an empty list would freeze every parameter")
        bad = [p for p in t.trainable if not p.strip()]
        need(not bad, "train.trainable", t.trainable, "empty pattern")
    from vidprior.models.side_taps import SIDE_TAPS

    need(cfg.init.side_taps in SIDE_TAPS, "init.side_taps", cfg.init.side_taps, f"expected one of {list(SIDE_TAPS)}")
    scale = cfg.init.side_taps_scale
    need(
        scale == "auto" or (isinstance(scale, float) and 0 <= scale < float("inf")),
        "init.side_taps_scale",
        scale,
        "expected a finite number >= 0 or 'auto'",
    )
    need(
        cfg.init.side_taps == "zero" or cfg.init.source in ("image", "imagenet_resnet", "official"),
        "init.side_taps",
        cfg.init.side_taps,
        f"only for weights inflated from 2D (init.source image, imagenet_resnet, official); not {cfg.init.source!r}",
    )
    if isinstance(cfg.init.mode, str):
        need(
            cfg.init.mode in ("center", "mean"),
            "init.mode",
            cfg.init.mode,
            "expected 'center', 'mean' or rates [a, b, c]",
        )


def check_paths(cfg: RunCfg) -> None:
    """Every data path the task needs exists (called before anything heavy)."""
    d = cfg.data
    keys = {"pretrain": ["train", "val"], "finetune": ["train", "val"], "test": ["test", "val"]}[cfg.task]
    for key in ["root", "labels", "classes", *keys]:
        value = getattr(d, key)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"data.{key}={value!r}: no such file or folder")
    if cfg.init.checkpoint is not None and not Path(cfg.init.checkpoint).exists():
        raise ConfigError(f"init.checkpoint={cfg.init.checkpoint!r}: no such file")


def save_yaml(cfg: RunCfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
