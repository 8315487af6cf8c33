"""The non-finite policy: a step whose loss or gradients are not finite is skipped (no optimizer update) and
counted; ``train.max_nonfinite_steps`` such steps in a row stop the run with :class:`NonFiniteError`, the last
good checkpoint kept. The decision is taken identically on every process (a MIN all-reduce of "finite"), so one
process with a NaN never leaves the others waiting in a collective the first one skipped."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vidprior.engine import checkpoint as ckpt
from vidprior.engine.distributed import all_true
from vidprior.engine.train_state import TrainState
from vidprior.errors import VidpriorError


class NonFiniteError(VidpriorError):
    """Too many consecutive steps with a non-finite loss or gradient."""


def grads_finite(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.stack([g.detach().float().abs().sum() for g in grads]).sum()))


def step_is_finite(loss: torch.Tensor, model: nn.Module, device: torch.device, *, check_grads: bool) -> bool:
    """The same answer on every process: the loss (and, with ``check_grads``, every gradient) is finite here and
    on all the others. With fp16 AMP the gradient scaler checks the gradients itself (``check_grads=False``)."""
    finite = bool(torch.isfinite(loss.detach())) and (not check_grads or grads_finite(model))
    return all_true(finite, device)


def count_step(state: TrainState, finite: bool) -> None:
    if finite:
        state.nonfinite_in_a_row = 0
    else:
        state.nonfinite_total += 1
        state.nonfinite_in_a_row += 1


def check_streak(state: TrainState, max_in_a_row: int, run_dir: Path) -> None:
    """Raise :class:`NonFiniteError` (naming the last good checkpoint) after ``max_in_a_row`` bad steps in a row."""
    if state.nonfinite_in_a_row < max_in_a_row:
        return
    last = ckpt.find_latest(run_dir)
    raise NonFiniteError(
        f"{state.nonfinite_in_a_row} steps in a row had a non-finite loss or gradient (step {state.step}); "
        f"stopped. Last good checkpoint: {last.path if last else 'none yet'}. Lower optim.lr or check the data"
    )


__all__ = ["NonFiniteError", "check_streak", "count_step", "grads_finite", "step_is_finite"]
