"""Swap the eligible ``nn.Conv3d`` layers of any model for :class:`STSConv3d` and back.

Works on vidprior's own models and on any user model (for example torchvision's ``r3d_18`` / ``r2plus1d_18``).
The swapped layers share the original Parameter objects, so the parameter count, the state dict and any optimizer
built on the model are unchanged.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from vidprior.errors import UnsupportedConvError
from vidprior.layers.sts import STSConv3d, sts_support

Where = Callable[[str, nn.Conv3d], bool] | str | Sequence[str] | None


@dataclass
class ConversionReport:
    """What :func:`to_sts` / :func:`from_sts` did: converted layer names and skipped ones with the reason."""

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s), skipped {len(self.skipped)}"]
        lines += [f"  + {name}" for name in self.converted]
        lines += [f"  - {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _selector(where: Where) -> Callable[[str, nn.Conv3d], bool]:
    if where is None:
        return lambda name, m: True
    if callable(where):
        return where
    patterns = [where] if isinstance(where, str) else list(where)
    if not all(isinstance(p, str) for p in patterns):
        raise UnsupportedConvError(f"where={where!r}: expected a callable, a glob pattern or a list of glob patterns")
    return lambda name, m: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def sts_eligibility(conv: nn.Module) -> str | None:
    """Why ``conv`` cannot become an STS layer, or ``None`` if it can."""
    if isinstance(conv, STSConv3d):
        return "already an STSConv3d"
    if type(conv).forward is not nn.Conv3d.forward or type(conv)._conv_forward is not nn.Conv3d._conv_forward:
        return f"{type(conv).__name__} is a subclass of nn.Conv3d with its own forward; not replaced"
    if tuple(conv.kernel_size)[0] == 1:
        return f"kernel {tuple(conv.kernel_size)} has no temporal extent: nothing to separate"
    return sts_support(
        tuple(conv.kernel_size),  # type: ignore[arg-type]
        dilation=tuple(conv.dilation),  # type: ignore[arg-type]
        padding_mode=conv.padding_mode,
    )


def to_sts(model: nn.Module, *, where: Where = None, **sts_options) -> ConversionReport:
    """Replace, in place, every eligible ``nn.Conv3d`` of ``model`` by an :class:`STSConv3d` with the same weights.

    Args:
        model: any module (a bare ``nn.Conv3d`` cannot be replaced in place: use ``STSConv3d.from_conv3d``).
        where: which layers to consider: ``None`` (all), a callable ``(name, conv) -> bool``, or glob pattern(s)
            on the module name (``"layer3.*.conv1"``).
        **sts_options: ``static_ratio``, ``static_mode``, ``static_dilation``, ``layout`` (see STSConv3d).

    Returns:
        A report listing converted layers and, for every other Conv3d, why it was skipped. Layers whose options
        are invalid raise :class:`UnsupportedConvError` before anything is changed.
    """
    select = _selector(where)
    report = ConversionReport()
    plan: list[tuple[str, nn.Conv3d]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv3d):
            continue
        if not select(name, module):
            report.skipped[name] = "not selected by `where`"
            continue
        why = sts_eligibility(module)
        if why is not None:
            report.skipped[name] = why
            continue
        if not name:
            raise UnsupportedConvError("to_sts() got a bare nn.Conv3d; use STSConv3d.from_conv3d(conv) instead")
        plan.append((name, module))
    # build everything first, so that a bad option leaves the model untouched
    replacements = []
    for name, conv in plan:
        try:
            replacements.append((name, STSConv3d.from_conv3d(conv, **sts_options)))
        except UnsupportedConvError as e:
            raise UnsupportedConvError(f"layer {name!r}: {e}") from None
    for name, sts in replacements:
        _set_submodule(model, name, sts)
        report.converted.append(name)
    return report


def from_sts(model: nn.Module) -> ConversionReport:
    """Replace, in place, every :class:`STSConv3d` of ``model`` by a plain ``nn.Conv3d`` sharing its Parameters."""
    report = ConversionReport()
    if isinstance(model, STSConv3d):
        raise UnsupportedConvError("from_sts() got a bare STSConv3d; use layer.to_conv3d() instead")
    for name, module in list(model.named_modules()):
        if isinstance(module, STSConv3d):
            _set_submodule(model, name, module.to_conv3d())
            report.converted.append(name)
    return report
