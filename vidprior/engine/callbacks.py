"""Callbacks: code that runs inside :meth:`Trainer.fit <vidprior.engine.trainer.Trainer.fit>` without changing it.

Subclass :class:`Callback`, override the hooks you need and pass instances as ``Trainer(..., callbacks=[...])`` (or
``run_training(cfg, callbacks=[...])``). Hooks run on every process, in the order given:

========================================  ==========================================================================
``on_fit_start(trainer)``                 after resuming (``trainer.state`` holds the position), before the first step
``on_loss(trainer, loss) -> loss``        after the forward pass, before backward; the returned loss is used
``on_step_end(trainer, loss, finite)``    after each optimizer step (or skipped non-finite step) and its counters
``on_epoch_end(trainer, record)``         after validation and the end-of-epoch checkpoint
``on_fit_end(trainer, summary)``          after the loop, before the summary is logged
========================================  ==========================================================================

The test suite uses them to inject faults from outside: a callback that kills its own process at a step, or that
turns the loss into NaN, runs a real training through these hooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

Trainer = Any  # the running vidprior.engine.trainer.Trainer (not imported: the trainer imports this module)


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_start(self, trainer: Trainer) -> None:
        pass

    def on_loss(self, trainer: Trainer, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def on_step_end(self, trainer: Trainer, loss: float, finite: bool) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        pass


class CallbackList(Callback):
    """Calls each callback in turn."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(trainer)

    def on_loss(self, trainer: Trainer, loss: torch.Tensor) -> torch.Tensor:
        for cb in self.callbacks:
            loss = cb.on_loss(trainer, loss)
        return loss

    def on_step_end(self, trainer: Trainer, loss: float, finite: bool) -> None:
        for cb in self.callbacks:
            cb.on_step_end(trainer, loss, finite)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, record)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_fit_end(trainer, summary)


__all__ = ["Callback", "CallbackList"]
