"""The training loop shared by ``vidprior pretrain`` (images) and ``vidprior finetune`` (videos).

:meth:`Trainer.fit` is the algorithm; each concern is a named piece in its own module:

* **Resume is exact on CPU** (:mod:`~vidprior.engine.train_state`). Checkpoints hold model, optimizer, scheduler,
  AMP scaler, EMA, every RNG (torch, CUDA, NumPy, Python) and the position in the epoch. Samples are pure functions
  of ``(seed, epoch, index)``, the epoch order of ``(seed, epoch)``, and DataLoader worker seeds come from a
  generator of ``(seed, epoch)``, so a run killed at any step and resumed with ``--resume auto`` ends bit for bit
  equal to an uninterrupted one.
* **No half-written checkpoint** (:mod:`~vidprior.engine.checkpoint`), written every N steps or minutes, at the end
  of every epoch, and on SIGTERM (save, then stop) or SIGUSR1 (save, go on) (:mod:`~vidprior.engine.signals`).
* **Non-finite losses or gradients** (:mod:`~vidprior.engine.guards`): the same decision on every process, the
  step skipped and counted, ``max_nonfinite_steps`` in a row stop the run with the last good checkpoint kept.
* **Budget accounting** (:meth:`TrainState.count_batch`): images seen (pre-training: images; fine-tuning: clips x
  frames), multiply-adds processed, wall time and device-hours, in every log record and the end-of-run summary.
* **Frozen parameters** (``train.trainable``; :mod:`~vidprior.engine.freezing`).
* **Validation and the best model** (:mod:`~vidprior.engine.evaluate`; ``best.safetensors`` + ``best.json``).
* **Callbacks** (:mod:`~vidprior.engine.callbacks`): hooks to add behaviour from outside.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidprior.engine import checkpoint as ckpt
from vidprior.engine import guards
from vidprior.engine.callbacks import Callback, CallbackList
from vidprior.engine.config import RunCfg, to_dict
from vidprior.engine.distributed import ResumableSampler, all_sum, barrier, is_main
from vidprior.engine.evaluate import evaluate, summary_metrics
from vidprior.engine.freezing import freeze_parameters, recompute_bn_stats, set_train_mode
from vidprior.engine.guards import NonFiniteError
from vidprior.engine.logger import MetricLogger, draw_curves
from vidprior.engine.optim import build_optimizer, build_scheduler, schedule_metadata
from vidprior.engine.signals import CheckpointClock, SignalWatch
from vidprior.engine.train_state import (
    TrainState,
    auto_resume_point,
    config_differences,
    rng_state,
    seed_everything,
    set_rng_state,
)
from vidprior.errors import VidpriorError
from vidprior.utils.memory_format import to_channels_last


class Trainer:
    """Runs ``cfg`` on a model and datasets; see the module docstring. ``kind`` is ``"video"`` or ``"image"``."""

    def __init__(
        self,
        cfg: RunCfg,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None,
        *,
        kind: str,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        frames_per_sample: int = 1,
        macs_per_sample: float = 0.0,
        mixup: Callable | None = None,
        allow_config_change: bool = False,
        allow_restart: bool = False,
        run_env: dict[str, Any] | None = None,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        self.cfg, self.kind, self.device = cfg, kind, device
        self.run_env = run_env if run_env is not None else _env()
        self.rank, self.world = rank, world_size
        self.run_dir = Path(cfg.out)
        self.input_key = "video" if kind == "video" else "image"
        self.frames = frames_per_sample
        self.macs_per_sample = macs_per_sample
        self.mixup = mixup
        self.allow_config_change, self.allow_restart = allow_config_change, allow_restart
        self.callbacks = CallbackList(callbacks)
        t = cfg.train
        self.per_process_batch = t.batch_size // world_size
        freeze_parameters(model, t.trainable)  # before DDP and the optimizer see the model
        self.model = model.to(device)
        if t.channels_last:
            to_channels_last(self.model)
        self.net: nn.Module = self.model
        if world_size > 1:
            if t.sync_bn:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if t.compile:
            self.net = torch.compile(self.net)
        self.train_set, self.val_set = train_set, val_set
        self.sampler = ResumableSampler(
            len(train_set),
            batch_size=self.per_process_batch,
            rank=rank,
            world_size=world_size,
            shuffle=True,
            seed=t.seed,
            drop_last=True,
            repeats=t.repeated_aug,
        )
        self.steps_per_epoch = self.sampler.steps
        self.optimizer = build_optimizer(self.model, cfg.optim, t.batch_size)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
        self.ema = None
        if t.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=t.ema_decay)
        self.state = TrainState()
        self.logger = MetricLogger(self.run_dir, enabled=is_main())
        self.clock = CheckpointClock(t.ckpt_every_steps, t.ckpt_every_minutes)
        self._last_loss = float("nan")

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
        """Train from the start or from ``resume`` to ``optim.epochs`` (or ``train.max_steps``, or SIGTERM)."""
        if not self.resume(resume):
            seed_everything(self.cfg.train.seed + self.rank)
        self.callbacks.on_fit_start(self)
        start_wall = time.monotonic() - self.state.wall_time
        stopped_by = None
        with SignalWatch() as signals:
            for epoch in range(self.state.epoch, self.cfg.optim.epochs):
                self.state.epoch = epoch
                self._train_mode()
                for batch in self._epoch_batches(epoch, progress):
                    loss, finite = self.train_step(batch)
                    self.state.count_batch(
                        samples=self.per_process_batch * self.world,
                        frames=self.frames,
                        macs_per_sample=self.macs_per_sample,
                        wall_time=time.monotonic() - start_wall,
                    )
                    self._log_step(epoch, loss, finite)
                    self.callbacks.on_step_end(self, loss, finite)
                    guards.check_streak(self.state, self.cfg.train.max_nonfinite_steps, self.run_dir)
                    stopped_by = self._save_if_due(signals)
                    if stopped_by:
                        break
                if stopped_by:
                    break
                self._end_epoch(epoch)
        summary = self.summary(stopped_early=stopped_by is not None)
        summary["stopped_by"] = stopped_by
        self.callbacks.on_fit_end(self, summary)
        if is_main():
            self.logger.log("summary", self.state.step, **{k: v for k, v in summary.items() if k != "history"})
            self.logger.close()
            draw_curves(self.run_dir)
        return summary

    def _epoch_batches(self, epoch: int, progress: bool):
        """The batches of ``epoch`` not trained on yet, behind a progress bar on the main process."""
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, self.state.batch_in_epoch)
        loader = self._loader(self.train_set, self.sampler, self.per_process_batch, epoch)
        if not (progress and is_main()):
            yield from loader
            return
        from tqdm import tqdm

        epochs = self.cfg.optim.epochs
        with tqdm(
            total=self.steps_per_epoch,
            initial=self.state.batch_in_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="step",
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            for batch in loader:
                yield batch
                bar.update()
                bar.set_postfix(loss=f"{self._last_loss:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")

    def _log_step(self, epoch: int, loss: float, finite: bool) -> None:
        self._last_loss = loss
        lr = self.optimizer.param_groups[0]["lr"]
        self.logger.log("train", self.state.step, epoch=epoch, loss=loss, lr=lr, finite=finite, **self.state.budget())

    def _save_if_due(self, signals: SignalWatch) -> str | None:
        """Checkpoint on schedule or on a signal; the reason to stop (``"SIGTERM"``, ``"max_steps"``) or None."""
        if self.clock.due(self.state.step):
            self.save()
        if signals.pending is not None:
            term = signals.pending == "term"
            self.save(sync=not term)  # on SIGTERM the other processes may already be gone
            signals.pending = None
            if term:
                return "SIGTERM"
        max_steps = self.cfg.train.max_steps
        return "max_steps" if max_steps is not None and self.state.step >= max_steps else None

    def _end_epoch(self, epoch: int) -> None:
        """Validate (with precise BN first), keep the best model, checkpoint."""
        t = self.cfg.train
        self.state.epoch, self.state.batch_in_epoch = epoch + 1, 0
        record: dict[str, Any] = {"epoch": epoch + 1}
        if self.val_set is not None and ((epoch + 1) % t.val_every == 0 or epoch + 1 == self.cfg.optim.epochs):
            self._precise_bn()
            record.update(self.validate())
            if self.ema is not None:
                record.update({f"ema_{k}": v for k, v in self.validate(self.ema.module).items()})
            self.logger.log("val", self.state.step, **record)
            if record.get("top1", -1) > self.state.best_top1 and is_main():
                self.state.best_top1 = record["top1"]
                _save_best(self.run_dir, self.model, record, self.schedule_metadata())
        self.state.history.append(record)
        self.save()
        self.callbacks.on_epoch_end(self, record)

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: dict[str, Any]) -> tuple[float, bool]:
        x, y = self._inputs(batch)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.net(x)
            loss = self._loss(logits.float(), y)
        loss = self.callbacks.on_loss(self, loss)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        fp16 = self.cfg.train.amp == "fp16"  # the scaler checks gradients itself
        finite = guards.step_is_finite(loss, self.model, self.device, check_grads=not fp16)
        if finite:
            if self.cfg.optim.clip_grad:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model, step=self.state.step)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
        guards.count_step(self.state, finite)
        self.state.step += 1
        self.scheduler.step_update(self.state.step)
        return float(loss.detach()), finite

    def _train_mode(self) -> None:
        t = self.cfg.train
        set_train_mode(self.model, norm_eval=t.norm_eval, frozen=t.trainable is not None)

    def _loader(self, dataset: Dataset, sampler, batch_size: int, epoch: int):
        from vidprior.data.loader import checked_loader  # bad files counted here for all workers; one-line errors

        workers = self.cfg.data.workers
        g = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + epoch)  # worker seeds: not the global RNG
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
            generator=g,
            persistent_workers=False,
        )
        return checked_loader(loader)

    def _autocast(self):
        amp = self.cfg.train.amp
        if amp == "none":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[self.input_key].to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            raise VidpriorError("training inputs are uint8: the dataset needs a transform that normalises to float")
        y = torch.as_tensor(batch["label"]).to(self.device, non_blocking=True)
        if self.cfg.train.channels_last and x.dim() in (4, 5):
            x = x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
        return x, y

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.cfg.train
        if target.dim() == 2:  # soft targets (mixup / cutmix / multi-label)
            if t.loss == "bce":
                return F.binary_cross_entropy_with_logits(logits, target)
            return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        if t.loss == "bce":
            onehot = F.one_hot(target, logits.shape[1]).float()
            smooth = t.label_smoothing
            return F.binary_cross_entropy_with_logits(logits, onehot * (1 - smooth) + smooth / logits.shape[1])
        return F.cross_entropy(logits, target, label_smoothing=t.label_smoothing)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "train_state": asdict(self.state),
            "config": to_dict(self.cfg),
            "world_size": self.world,
            "env": self.run_env,  # versions, world size, data hash
        }

    def save(self, *, sync: bool = True) -> Path | None:
        """Checkpoint (written by the main process; the state is the same on every process). ``sync=False`` skips
        the barrier: on SIGTERM the other processes may already be gone."""
        path = None
        if is_main():
            path = ckpt.save_checkpoint(
                self.run_dir,
                self.state.step,
                self.state_dict(),
                model_state=self.model.state_dict(),
                keep_last=self.cfg.train.keep_last,
                metadata=self.schedule_metadata(),
            )
        self.clock.saved()
        if sync:
            barrier()
        return path

    def schedule_metadata(self) -> dict[str, str]:
        """The optimizer schedule so far, recorded in saved weights (``init.side_taps_scale=auto`` reads it)."""
        return schedule_metadata(self.cfg.optim, self.cfg.train.batch_size, self.steps_per_epoch, self.state.step)

    def resume(self, spec: str | None) -> bool:
        """``spec``: ``"auto"`` (newest valid checkpoint in the run folder, if any: :func:`auto_resume_point`) or a
        checkpoint folder."""
        if not spec:
            return False
        path = auto_resume_point(self.run_dir, allow_restart=self.allow_restart) if spec == "auto" else Path(spec)
        if path is None:
            return False
        data = ckpt.load_checkpoint(path, map_location=self.device)
        diff = config_differences(data["config"], to_dict(self.cfg))
        if data.get("world_size", 1) != self.world:
            diff.append(f"world_size ({data.get('world_size')} -> {self.world})")
        if diff and not self.allow_config_change:
            raise VidpriorError(
                f"cannot resume from {path}: the configuration differs in {', '.join(diff)}; restore it, start a new "
                "run folder, or pass --allow-config-change"
            )
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        if self.ema is not None and data.get("ema") is not None:
            self.ema.load_state_dict(data["ema"])
        self.state = TrainState(**data["train_state"])
        set_rng_state(data["rng"])
        return True

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Top-1 / top-5 / loss of ``model`` (default: the trained one) on the validation set, all processes
        together (:func:`vidprior.engine.evaluate.evaluate`)."""
        if self.val_set is None:
            return {}
        model = model or self.model
        was = model.training
        model.eval()
        batch_size = max(1, self.per_process_batch)
        sampler = ResumableSampler(
            len(self.val_set),
            batch_size=batch_size,
            rank=self.rank,
            world_size=self.world,
            shuffle=False,
            drop_last=False,
        )
        batches = self._loader(self.val_set, sampler, batch_size, 0)
        dims = 4 if self.kind == "video" else 3  # one view: (C, T, H, W) or (C, H, W)
        ev = evaluate(model, batches, self._inputs, sample_dims=dims, autocast=self._autocast)
        if model is self.model and was:
            self._train_mode()
        else:
            model.train(was)
        return summary_metrics(*all_sum(ev.sums(), self.device))

    def _precise_bn(self) -> None:
        n = self.cfg.train.precise_bn_batches
        if n <= 0:
            return
        sampler = ResumableSampler(
            len(self.train_set),
            batch_size=self.per_process_batch,
            rank=self.rank,
            world_size=self.world,
            shuffle=True,
            seed=self.cfg.train.seed + 17,
            drop_last=True,
        )
        batches = []
        for i, batch in enumerate(self._loader(self.train_set, sampler, self.per_process_batch, self.state.epoch)):
            if i >= n:
                break
            batches.append(batch)
        # with train.trainable, frozen BatchNorms (eval mode in training) keep their statistics; otherwise every
        # BatchNorm is recomputed, as before train.trainable existed (norm_eval included)
        mode = self._train_mode if self.cfg.train.trainable is not None else None
        recompute_bn_stats(self.model, batches, self.device, lambda b: self.model(self._inputs(b)[0]), train_mode=mode)

    def summary(self, stopped_early: bool = False) -> dict[str, Any]:
        s = self.state
        devices = self.world
        return {
            "epochs_done": s.epoch,
            "steps": s.step,
            "stopped_early": stopped_early,
            "best_top1": s.best_top1 if s.best_top1 >= 0 else None,
            "images_seen": s.images_seen,
            "macs_processed": s.macs_processed,
            "wall_time_s": s.wall_time,
            "device_hours": s.wall_time * devices / 3600,
            "nonfinite_steps": s.nonfinite_total,
            "history": s.history,
        }


def _save_best(run_dir: Path, model: nn.Module, record: dict[str, Any], metadata: dict[str, str]) -> None:
    ckpt.write_safetensors(run_dir / "best.safetensors", model.state_dict(), metadata)
    (run_dir / "best.json").write_text(json.dumps(record))


def _env() -> dict[str, str]:
    from vidprior.utils.env import environment

    return environment()


__all__ = ["NonFiniteError", "Trainer"]
