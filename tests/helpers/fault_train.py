"""Run a real ``vidprior`` training with faults injected through the public callback API.

    python tests/helpers/fault_train.py [--kill-at-step N [--kill-once FILE]] [--nan-from-step N [--nan-rank R]]
        [--raise-at-step N] [--stall-at-step N --stall-rank R] [--resume auto] TASK key=value ...

``--kill-at-step``: the main process SIGKILLs itself right after optimizer step N (with ``--kill-once``, only while
FILE does not exist; it is created first, so a restarted run goes on). ``--nan-from-step``: every loss from step N on
is NaN (with ``--nan-rank``, on that process only). ``--stall-at-step``: process ``--stall-rank`` stops answering
(sleeps) after step N, as a stuck peer. ``--raise-at-step``: a RuntimeError after step N. Errors a user would see
are printed as one line with exit status 2, as the ``vidprior`` command does. Works under ``torchrun`` (every
process runs the callbacks).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
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
    def __init__(self, step: int, rank: int | None) -> None:
        self.step, self.rank = step, rank

    def on_loss(self, trainer, loss: torch.Tensor) -> torch.Tensor:
        here = self.rank is None or trainer.rank == self.rank
        return loss * float("nan") if here and trainer.state.step + 1 >= self.step else loss


class StallAtStep(Callback):
    def __init__(self, step: int, rank: int) -> None:
        self.step, self.rank = step, rank

    def on_step_end(self, trainer, loss: float, finite: bool) -> None:
        if trainer.state.step == self.step and trainer.rank == self.rank:
            time.sleep(600)  # stuck: never reaches the next collective (torchrun ends it when the others fail)


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
    p.add_argument("--nan-rank", type=int)
    p.add_argument("--raise-at-step", type=int)
    p.add_argument("--stall-at-step", type=int)
    p.add_argument("--stall-rank", type=int, default=1)
    p.add_argument("--resume")
    p.add_argument("task", choices=["pretrain", "finetune"])
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    callbacks: list[Callback] = []
    if args.kill_at_step:
        callbacks.append(KillAtStep(args.kill_at_step, args.kill_once))
    if args.nan_from_step:
        callbacks.append(NanFromStep(args.nan_from_step, args.nan_rank))
    if args.stall_at_step:
        callbacks.append(StallAtStep(args.stall_at_step, args.stall_rank))
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
