"""The Trainer's callback API, in process on a tiny linear model: hooks run in the documented order with the
trainer's real state, a callback can change the loss (the non-finite policy then stops the run), and ``fit`` ends
at ``train.max_steps``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidprior.data.robust import RobustDataset
from vidprior.engine.callbacks import Callback
from vidprior.engine.config import load_config
from vidprior.engine.guards import NonFiniteError
from vidprior.engine.trainer import Trainer


class Points(RobustDataset):
    """Two classes of 3-d points: the class is the sign of the first coordinate."""

    def _load(self, index, rng):
        g = torch.Generator().manual_seed(index)
        x = torch.randn(3, 1, 1, generator=g)  # an "image" (C=3, H=1, W=1)
        return {"image": x, "label": int(x[0, 0, 0] > 0)}

    def path_of(self, index):
        return f"point{index}"


def _trainer(tmp_path, *overrides: str, callbacks=()) -> Trainer:
    cfg = load_config(
        None,
        [
            "task=pretrain", "data.train=x", "data.workers=0", "model.num_classes=2", f"out={tmp_path}",
            "train.batch_size=4", "train.ckpt_every_minutes=null", "optim.epochs=2", "optim.warmup_epochs=0",
            "optim.lr=0.1", *overrides,
        ],
    )  # fmt: skip
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))  # (B, 3, 1, 1) -> (B, 3) -> (B, 2)
    return Trainer(
        cfg, model, Points(16), Points(8, seed=1), kind="image", device=torch.device("cpu"), run_env={},
        callbacks=callbacks,
    )  # fmt: skip


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_fit_start(self, trainer):
        self.events.append(("start", trainer.state.step))

    def on_loss(self, trainer, loss):
        self.events.append(("loss", trainer.state.step))
        return loss

    def on_step_end(self, trainer, loss, finite):
        self.events.append(("step", trainer.state.step, finite))

    def on_epoch_end(self, trainer, record):
        self.events.append(("epoch", record["epoch"], "top1" in record))

    def on_fit_end(self, trainer, summary):
        self.events.append(("end", summary["steps"]))


def test_hooks_run_in_order_with_the_trainers_state(tmp_path):
    rec = Recorder()
    summary = _trainer(tmp_path, callbacks=[rec]).fit(progress=False)
    expected = [("start", 0)]
    for epoch in range(2):
        for s in range(4 * epoch, 4 * epoch + 4):
            expected += [("loss", s), ("step", s + 1, True)]
        expected.append(("epoch", epoch + 1, True))
    expected.append(("end", 8))
    assert rec.events == expected
    assert summary["steps"] == 8 and summary["stopped_by"] is None


class NanLoss(Callback):
    def on_loss(self, trainer, loss):
        return loss * float("nan") if trainer.state.step >= 2 else loss


def test_a_callback_can_inject_a_fault_and_the_non_finite_policy_stops_the_run(tmp_path):
    trainer = _trainer(tmp_path, "train.max_nonfinite_steps=3", "train.ckpt_every_steps=1", callbacks=[NanLoss()])
    # steps 3, 4, 5 are NaN; the checkpoint of step 4 holds the weights of step 2 (skipped steps change nothing)
    with pytest.raises(NonFiniteError, match=r"3 steps in a row .* \(step 5\).*/step_00000004"):
        trainer.fit(progress=False)
    assert trainer.state.nonfinite_total == 3 and trainer.state.step == 5
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # skipped steps changed nothing


def test_max_steps_stops_the_loop(tmp_path):
    rec = Recorder()
    summary = _trainer(tmp_path, "train.max_steps=3", callbacks=[rec]).fit(progress=False)
    assert summary["steps"] == 3 and summary["stopped_by"] == "max_steps"
    assert [e for e in rec.events if e[0] == "step"][-1] == ("step", 3, True)
    assert not any(e[0] == "epoch" for e in rec.events)
