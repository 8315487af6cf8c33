"""2D <-> 3D weight transfer (paper §3.2 and Table 9; docs/method.md).

* :func:`inflate_weight` turns a 2D kernel ``(C_out, C_in/g, kh, kw)`` into a 3D kernel with temporal size ``kt``:
  ``"center"`` puts it in the centre temporal slice and zeros elsewhere (the paper's "zero-init", Table 9
  "(0, 1, 0)"); ``"mean"`` is I3D inflation (``w / kt`` in every slice); a sequence of rates such as
  ``(1/9, 1/3, 1/9)`` scales each slice (note that the authors' rates also scale the centre slice).
* :func:`deflate_weight` goes back: one chosen slice, or the sum over slices (the inverse of ``"mean"``).
* :func:`inflate_state_dict` / :func:`deflate_state_dict` map a whole state dict onto a model's state dict; every
  tensor is accounted for, and any missing, unexpected or mis-shaped key raises :class:`TransferError` with the
  offending keys and shapes, except keys the caller lists in ``skip`` (reported, not silent).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

import torch
from torch import Tensor, nn

from vidprior.errors import TransferError

InflateRule = Union[Literal["center", "mean"], Sequence[float]]
InflateMode = Union[InflateRule, Mapping[int, InflateRule]]
DeflateSlice = Union[Literal["center", "sum"], int]


def _rule_for(mode: InflateMode, kt: int, key: str = "") -> InflateRule:
    if isinstance(mode, Mapping):
        if kt not in mode:
            where = f" for {key!r}" if key else ""
            raise TransferError(
                f"no inflation rule for temporal size {kt}{where}: mode maps only {sorted(mode)}; "
                f"add an entry {kt}: 'center' | 'mean' | (rates...)"
            )
        return mode[kt]
    return mode


def inflate_weight(weight: Tensor, kt: int, mode: InflateMode = "center") -> Tensor:
    """Inflate a 2D kernel to temporal size ``kt``.

    Args:
        weight: ``(C_out, C_in/g, kh, kw)``, or a 3D kernel with temporal size 1 ``(C_out, C_in/g, 1, kh, kw)``.
        kt: temporal kernel size of the target.
        mode: ``"center"`` (needs odd ``kt``), ``"mean"``, ``kt`` explicit rates, or a mapping ``{kt: rule}``.

    Returns:
        ``(C_out, C_in/g, kt, kh, kw)``, a new tensor with the dtype and device of ``weight``.
    """
    if weight.dim() == 5:
        if weight.shape[2] != 1:
            raise TransferError(
                f"inflate_weight expects a 2D kernel or temporal size 1, got shape {tuple(weight.shape)}"
            )
        weight = weight[:, :, 0]
    if weight.dim() != 4:
        raise TransferError(
            f"inflate_weight expects a 4-D conv kernel (C_out, C_in, kh, kw), got {tuple(weight.shape)}"
        )
    if not isinstance(kt, int) or kt < 1:
        raise TransferError(f"temporal size kt={kt!r} must be a positive integer")
    rule = _rule_for(mode, kt)
    w = weight.detach()
    if isinstance(rule, str):
        if rule == "center":
            if kt % 2 == 0:
                raise TransferError(f"mode='center' needs an odd temporal size, got kt={kt}; use 'mean' or rates")
            out = w.new_zeros((w.shape[0], w.shape[1], kt, w.shape[2], w.shape[3]))
            out[:, :, kt // 2] = w
            return out
        if rule == "mean":
            return (w / kt).unsqueeze(2).repeat(1, 1, kt, 1, 1)
        raise TransferError(f"inflation mode {rule!r}: expected 'center', 'mean' or a sequence of {kt} rates")
    rates = [float(r) for r in rule]
    if len(rates) != kt:
        raise TransferError(
            f"inflation rates {tuple(rule)} have {len(rates)} entries but the kernel has temporal size {kt}; "
            f"pass {kt} rates, or a mapping such as {{{kt}: 'center', 3: (1/9, 1/3, 1/9)}}"
        )
    return torch.stack([w * r for r in rates], dim=2)


def deflate_weight(weight: Tensor, slice: DeflateSlice = "center") -> Tensor:
    """Turn a 3D kernel ``(C_out, C_in/g, kt, kh, kw)`` into a 2D one ``(C_out, C_in/g, kh, kw)``.

    ``slice``: ``"center"`` (odd ``kt``; exact inverse of centre inflation), an index, or ``"sum"`` (inverse of
    ``"mean"`` inflation: sums the temporal taps, which is what the 3D kernel computes on a static clip).
    """
    if weight.dim() != 5:
        raise TransferError(f"deflate_weight expects a 5-D conv kernel, got shape {tuple(weight.shape)}")
    kt = weight.shape[2]
    w = weight.detach()
    if slice == "center":
        if kt % 2 == 0:
            raise TransferError(f"slice='center' needs an odd temporal size, got kt={kt}; pass an index or 'sum'")
        return w[:, :, kt // 2].clone()
    if slice == "sum":
        return w.sum(dim=2)
    if isinstance(slice, int) and not isinstance(slice, bool):
        if not -kt <= slice < kt:
            raise TransferError(f"slice index {slice} is out of range for temporal size {kt}")
        return w[:, :, slice].clone()
    raise TransferError(f"slice={slice!r}: expected 'center', 'sum' or an integer index")


@dataclass
class TransferReport:
    """Where every tensor went: ``inflated`` (2D -> 3D or 3D -> 2D), ``copied`` as is, ``skipped`` with reasons."""

    inflated: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{len(self.inflated)} reshaped, {len(self.copied)} copied, {len(self.skipped)} skipped"]
        lines += [f"  skipped {k}: {why}" for k, why in self.skipped.items()]
        return "\n".join(lines)


def _target_shapes(target: nn.Module | Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    sd = target.state_dict() if isinstance(target, nn.Module) else target
    return {k: tuple(v.shape) for k, v in sd.items()}


def _rename(state: Mapping[str, Tensor], rename: Sequence[tuple[str, str]]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rename:
            new = re.sub(pattern, repl, new)
        if new in out:
            raise TransferError(f"rename maps two source keys onto {new!r} (one of them is {key!r})")
        out[new] = value
    return out


def _transfer(
    source: Mapping[str, Tensor],
    target: nn.Module | Mapping[str, Tensor],
    reshape,
    *,
    skip: Sequence[str],
    rename: Sequence[tuple[str, str]],
    direction: str,
) -> tuple[dict[str, Tensor], TransferReport]:
    if not isinstance(source, Mapping):
        raise TransferError(f"expected a state dict (a mapping of names to tensors), got {type(source).__name__}")
    src = _rename(source, rename)
    dst = _target_shapes(target)
    report = TransferReport()
    out: dict[str, Tensor] = {}

    def skipped(key: str) -> str | None:
        for p in skip:
            if fnmatch.fnmatchcase(key, p):
                return p
        return None

    missing, unexpected, mismatched = [], [], []
    for key, shape in dst.items():
        pattern = skipped(key)
        if key not in src:
            if pattern is not None:
                report.skipped[key] = f"matches skip pattern {pattern!r}; not in the source"
            else:
                missing.append(key)
            continue
        value = src[key]
        if not isinstance(value, Tensor):
            raise TransferError(f"source entry {key!r} is a {type(value).__name__}, not a tensor")
        if pattern is not None:
            extra = "" if tuple(value.shape) == shape else f" (source {tuple(value.shape)}, target {shape})"
            report.skipped[key] = f"matches skip pattern {pattern!r}{extra}"
            continue
        if tuple(value.shape) == shape:
            out[key] = value.detach().clone()
            report.copied.append(key)
            continue
        try:
            new = reshape(key, value, shape)
        except TransferError as e:
            mismatched.append(f"{key}: source {tuple(value.shape)} -> target {shape} ({e})")
            continue
        if new is None:
            mismatched.append(f"{key}: source {tuple(value.shape)} -> target {shape}")
            continue
        out[key] = new
        report.inflated.append(key)
    for key in src:
        if key not in dst:
            pattern = skipped(key)
            if pattern is not None:
                report.skipped[key] = f"matches skip pattern {pattern!r}; not in the target"
            else:
                unexpected.append(key)
    if missing or unexpected or mismatched:
        parts = [f"{direction} transfer failed"]
        if missing:
            parts.append(f"missing in the source ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            parts.append(f"not in the target ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if mismatched:
            parts.append(f"shapes that cannot be mapped ({len(mismatched)}): {'; '.join(mismatched[:20])}")
        parts.append("rename keys with rename=[(regex, replacement)] or list keys to leave out with skip=[glob]")
        raise TransferError("\n  ".join(parts))
    return out, report


def inflate_state_dict(
    state_2d: Mapping[str, Tensor],
    target: nn.Module | Mapping[str, Tensor],
    *,
    mode: InflateMode = "center",
    skip: Sequence[str] = (),
    rename: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, Tensor], TransferReport]:
    """Map a 2D (image) state dict onto a 3D model's state dict.

    Tensors of equal shape are copied; a 4-D kernel (or 5-D with temporal size 1) whose target is a 5-D kernel
    with the same other dimensions is inflated with ``mode``. Anything else raises :class:`TransferError` listing
    every missing, unexpected and mis-shaped key, unless it matches a glob in ``skip`` (for example a classifier of
    another size: ``skip=["fc.*"]``); skipped keys are reported. ``rename`` applies ``re.sub`` pairs to the source
    keys first.

    Returns:
        ``(state_3d, report)``; load it with ``model.load_state_dict(state_3d, strict=not report.skipped)`` or use
        :func:`load_inflated`.
    """

    def reshape(key: str, value: Tensor, shape: tuple[int, ...]) -> Tensor | None:
        if len(shape) != 5:
            return None
        src = value[:, :, 0] if value.dim() == 5 and value.shape[2] == 1 else value
        if src.dim() != 4 or (src.shape[0], src.shape[1], src.shape[2], src.shape[3]) != (
            shape[0],
            shape[1],
            shape[3],
            shape[4],
        ):
            return None
        return inflate_weight(src, shape[2], _rule_for(mode, shape[2], key))

    return _transfer(state_2d, target, reshape, skip=skip, rename=rename, direction="2D -> 3D")


def deflate_state_dict(
    state_3d: Mapping[str, Tensor],
    target: nn.Module | Mapping[str, Tensor],
    *,
    slice: DeflateSlice = "center",
    skip: Sequence[str] = (),
    rename: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, Tensor], TransferReport]:
    """Map a 3D state dict onto a 2D model's (or a temporal-size-1 3D model's) state dict; see
    :func:`inflate_state_dict` for the rules. 5-D kernels become the target's 4-D (or ``kt = 1`` 5-D) kernels
    through :func:`deflate_weight` with ``slice``."""

    def reshape(key: str, value: Tensor, shape: tuple[int, ...]) -> Tensor | None:
        if value.dim() != 5:
            return None
        flat = (value.shape[0], value.shape[1], value.shape[3], value.shape[4])
        if len(shape) == 4 and tuple(shape) == flat:
            return deflate_weight(value, slice)
        if len(shape) == 5 and shape[2] == 1 and (shape[0], shape[1], shape[3], shape[4]) == flat:
            return deflate_weight(value, slice).unsqueeze(2)
        return None

    return _transfer(state_3d, target, reshape, skip=skip, rename=rename, direction="3D -> 2D")


def load_inflated(
    model: nn.Module,
    state_2d: Mapping[str, Tensor],
    *,
    mode: InflateMode = "center",
    skip: Sequence[str] = (),
    rename: Sequence[tuple[str, str]] = (),
) -> TransferReport:
    """Inflate ``state_2d`` into ``model`` in place (see :func:`inflate_state_dict`). Only keys matched by ``skip``
    may stay at the model's own initialisation; they are listed in the returned report."""
    state, report = inflate_state_dict(state_2d, model, mode=mode, skip=skip, rename=rename)
    result = model.load_state_dict(state, strict=False)
    left = [k for k in result.missing_keys if k not in report.skipped]
    if left or result.unexpected_keys:  # cannot happen unless the model changes its keys between calls
        raise TransferError(f"load_state_dict left keys {left} unloaded and {result.unexpected_keys} unexpected")
    return report
