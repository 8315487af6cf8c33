"""A small explicit registry of model builders, and ``create_model`` / ``list_models``.

Each builder is an ordinary function in its family module, decorated with :func:`register_model`, which only records
it (duplicates raise). ``vidprior/models/__init__.py`` imports every family module by name.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable

from torch import nn

from vidprior.errors import ModelOptionError, VidpriorError, closest
from vidprior.layers.convert import ConversionReport, to_sts
from vidprior.layers.sts import STS_OPTIONS

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def get_builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise VidpriorError(f"unknown model {name!r}{closest(name, list(_MODELS))}; see `vidprior models`")
    return _MODELS[name]


def apply_sts(model: nn.Module, sts: bool | str, **sts_options) -> ConversionReport | None:
    """Put STS where the paper did (``sts=True`` or ``"paper"``: the model's ``sts_layers``) or into every eligible
    conv (``sts="all"``). ``sts=False`` does nothing."""
    if sts is False or sts is None:
        return None
    if sts is True or sts == "paper":
        names = list(getattr(model, "sts_layers", []))
        report = to_sts(model, where=lambda n, m: n in names, **sts_options)
        missing = sorted(set(names) - set(report.converted))
        if missing:
            raise VidpriorError(f"STS placement names layers that could not be converted: {missing}")
        return report
    if sts == "all":
        return to_sts(model, **sts_options)
    raise VidpriorError(f"sts={sts!r}: expected True / 'paper' (the paper's placement), 'all' or False")


def create_model(name: str, *, num_classes: int = 400, sts: bool | str = False, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: classifier size (0: no classifier; the model returns pooled features).
        sts: ``False``; ``True`` places STS where the paper did; ``"all"`` converts every eligible conv.
        **kwargs: STS options (``static_ratio``, ``static_mode``, ``static_dilation``, ``layout``) and builder
            overrides (width, depth, ... see each builder's signature).
    """
    builder = get_builder(name)
    sts_options = {k: kwargs.pop(k) for k in STS_OPTIONS if k in kwargs}
    params = inspect.signature(builder).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = [p for p in params if p != "num_classes"]
        raise VidpriorError(
            f"{name}: unknown option {unknown[0]!r}{closest(unknown[0], allowed)}; accepted: {', '.join(allowed)}"
        )
    if not isinstance(num_classes, int) or num_classes < 0:
        raise VidpriorError(f"num_classes={num_classes!r}: expected an integer >= 0")
    try:
        model = builder(num_classes=num_classes, **kwargs)
    except (ValueError, TypeError) as e:  # a builder's own check of a value (width, strides, blocks...)
        if isinstance(e, VidpriorError):
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelOptionError(f"{name}({given}): {e} (in a config: model.overrides)") from None
    if sts_options and not sts:
        raise VidpriorError(f"STS options {sorted(sts_options)} given but sts=False; pass sts=True or sts='all'")
    apply_sts(model, sts, **sts_options)
    return model
