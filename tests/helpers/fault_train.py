"""Run a real ``vidprior`` training with faults injected through the public callback API.

    python tests/helpers/fault_train.py [--kill-at-step N [--kill-once FILE]] [--nan-from-step N]
        [--raise-at-step N] [--resume auto] TASK key=value ...

``--kill-at-step``: the main process SIGKILLs itself right after optimizer step N (with ``--kill-once``, only while
FILE does not exist; it is created first, so a restarted run goes on). ``--nan-from-step``: every loss from step N on
is NaN. ``--raise-at-step``: a RuntimeError after step N. Errors a user would see are printed as one line with exit
status 2, as the ``vidprior`` command does. Works under ``torchrun`` (every process runs the callbacks).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

from vidprior.engine.callbacks import Callback
from vidprior.engine.config import load_config
from vidprior.errors import VidpriorError


class KillAtStep(Callback):
    def __init__(self, step: int, once_file: str | None) -> None:
        self.step, self.once_file = step, once_file

    def on_step_end(self, trainer, loss: float, finite: bool) -> None:
        if trainer.state.step != self.step or trainer.rank != 0:
            return
        if self.once_file:
            if Path(self.once_file).exists():
                return
            Path(self.once_file).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)


class NanFromStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_loss(self, trainer, loss: torch.Tensor) -> torch.Tensor:
        return loss * float("nan") if trainer.state.step + 1 >= self.step else loss


class RaiseAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, loss: float, finite: bool) -> None:
        if trainer.state.step == self.step:
            raise RuntimeError(f"injected failure after step {self.step}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kill-at-step", type=int)
    p.add_argument("--kill-once")
    p.add_argument("--nan-from-step", type=int)
    p.add_argument("--raise-at-step", type=int)
    p.add_argument("--resume")
    p.add_argument("task", choices=["pretrain", "finetune"])
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    callbacks: list[Callback] = []
    if args.kill_at_step:
        callbacks.append(KillAtStep(args.kill_at_step, args.kill_once))
    if args.nan_from_step:
        callbacks.append(NanFromStep(args.nan_from_step))
    if args.raise_at_step:
        callbacks.append(RaiseAtStep(args.raise_at_step))
    from vidprior.engine import jobs
    from vidprior.engine.distributed import cleanup

    try:
        cfg = load_config(None, [f"task={args.task}", *args.overrides])
        jobs.run_training(cfg, resume=args.resume, progress=False, callbacks=callbacks)
    except VidpriorError as e:
        print(f"fault_train: error: {e}", file=sys.stderr)
        return 2
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
