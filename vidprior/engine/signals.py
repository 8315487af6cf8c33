"""When the trainer saves: every ``train.ckpt_every_steps`` steps or ``train.ckpt_every_minutes`` minutes
(:class:`CheckpointClock`), and on a signal (:class:`SignalWatch`): SIGTERM saves and stops (a scheduler's
pre-emption notice; exit 143), SIGUSR1 saves and goes on."""

from __future__ import annotations

import signal
import time


class CheckpointClock:
    def __init__(self, every_steps: int | None, every_minutes: float | None) -> None:
        self.every_steps, self.every_minutes = every_steps, every_minutes
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_minutes and time.monotonic() - self.last >= 60 * self.every_minutes)

    def saved(self) -> None:
        self.last = time.monotonic()


class SignalWatch:
    """Within ``with``: SIGTERM / SIGUSR1 set :attr:`pending` (``"term"`` / ``"usr1"``) instead of acting; the
    previous handlers come back on exit."""

    def __init__(self) -> None:
        self.pending: str | None = None
        self._old: dict[int, object] = {}

    def _on_signal(self, signum, frame) -> None:
        self.pending = "term" if signum == signal.SIGTERM else "usr1"

    def __enter__(self) -> SignalWatch:
        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


__all__ = ["CheckpointClock", "SignalWatch"]
