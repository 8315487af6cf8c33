"""The training loop shared by ``vidprior pretrain`` (images) and ``vidprior finetune`` (videos).

What it guarantees (reliability.md §4.1-4.4):

* **Resume is exact on CPU.** Checkpoints hold model, optimizer, scheduler, AMP scaler, EMA, every RNG (torch,
  CUDA, NumPy, Python) and the position in the epoch. Samples are pure functions of ``(seed, epoch, index)``, the
  epoch order of ``(seed, epoch)``, and DataLoader worker seeds come from a generator of ``(seed, epoch)``, so a run
  killed at any step and resumed with ``--resume auto`` ends bit for bit equal to an uninterrupted one.
* **No half-written checkpoint**, written every N steps or minutes, at the end of every epoch, and on
  SIGTERM (save, then stop) or SIGUSR1 (save, go on) — see :mod:`vidprior.engine.checkpoint`.
* **Non-finite losses or gradients** are detected identically on every process (a MIN all-reduce), the step is
  skipped and counted; ``max_nonfinite_steps`` in a row stop the run with the last good checkpoint kept.
* **Budget accounting**: images seen (pre-training: images; fine-tuning: clips x frames), multiply-adds processed,
  wall time and device-hours, in every log record and the end-of-run summary.
* **Frozen parameters** (``train.trainable``, e.g. the linear probe of paper Table 1): only parameters matching the
  patterns get gradients and enter the optimizer (and DDP's reducer); the largest sub-modules without a trainable
  parameter run in eval mode throughout training (:func:`frozen_modules`), so their BatchNorm statistics do not
  drift, and precise BN leaves them alone. Checkpoints and EMA still hold the whole model.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidprior.engine import checkpoint as ckpt
from vidprior.engine.config import RunCfg, to_dict
from vidprior.engine.distributed import ResumableSampler, all_sum, all_true, barrier, is_main
from vidprior.engine.logger import MetricLogger, draw_curves
from vidprior.engine.metrics import topk_correct
from vidprior.engine.optim import build_optimizer, build_scheduler, schedule_metadata
from vidprior.errors import VidpriorError

# keys of the config that may differ on resume without changing what the run computes
RESUME_SAFE_KEYS = {"out", "train.max_steps", "data.workers", "train.ckpt_every_steps", "train.ckpt_every_minutes"}


class NonFiniteError(VidpriorError):
    """Too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    step: int = 0  # optimizer steps taken (skipped non-finite steps included)
    best_top1: float = -1.0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    images_seen: float = 0.0
    macs_processed: float = 0.0
    wall_time: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": pos,
        "has_gauss": has_gauss,
        "gauss": gauss,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ (a key the saved config lacks, added to vidprior since, counts as its default)."""
    a, b = _flatten(saved), _flatten(current)
    defaults = _flatten(to_dict(RunCfg()))
    return sorted(k for k in set(a) | set(b) if a.get(k, defaults.get(k)) != b.get(k) and k not in RESUME_SAFE_KEYS)


def freeze_parameters(model: nn.Module, patterns: list[str] | None) -> list[str]:
    """``train.trainable``: parameters whose names match one of the fnmatch ``patterns`` keep ``requires_grad``,
    all others are frozen. Returns the trainable names (all of them for ``patterns=None``). A pattern that matches
    no parameter is a :class:`~vidprior.engine.config.ConfigError` naming it and some real names."""
    import fnmatch

    from vidprior.engine.config import ConfigError

    named = list(model.named_parameters())
    if patterns is None:
        return [n for n, p in named if p.requires_grad]
    names = [n for n, _ in named]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            examples = ", ".join(names[:3] + names[-2:]) if len(names) > 5 else ", ".join(names)
            raise ConfigError(
                f"train.trainable: pattern {pattern!r} matches no parameter of the model; its parameters are "
                f"named like {examples}"
            )
    trainable = []
    for name, p in named:
        p.requires_grad_(any(fnmatch.fnmatchcase(name, pat) for pat in patterns))
        if p.requires_grad:
            trainable.append(name)
    return trainable


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The largest sub-modules whose parameters are all frozen (and that hold parameters or buffers): the trainer
    keeps them in eval mode, so frozen BatchNorm statistics do not drift and frozen dropout / drop-path is off.
    Parameter-free modules inside a trainable one (a head's dropout) are not among them."""
    out: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        params = list(m.parameters())
        if any(p.requires_grad for p in params):
            for child in m.children():
                visit(child)
        elif params or any(True for _ in m.buffers()):
            out.append(m)

    visit(model)
    return out


def recompute_bn_stats(
    model: nn.Module, batches, device: torch.device, forward: Callable, *, train_mode: Callable | None = None
) -> None:
    """Precise BN: replace running statistics by their exact average over ``batches`` (train-mode forward).

    ``train_mode``: puts the model in its training mode (default ``model.train()``); only the BatchNorms it leaves
    in training mode are recomputed (frozen ones, in eval mode, keep their statistics)."""
    was = model.training
    train_mode = train_mode or model.train
    train_mode()
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training
    ]
    if not bns:
        _restore_mode(model, was, train_mode)
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    with torch.no_grad():
        for batch in batches:
            forward(batch)
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    _restore_mode(model, was, train_mode)


def _restore_mode(model: nn.Module, was_training: bool, train_mode: Callable) -> None:
    if was_training:
        train_mode()
    else:
        model.eval()


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
        num_classes: int | None = None,
        run_env: dict[str, Any] | None = None,
    ) -> None:
        self.cfg, self.kind, self.device = cfg, kind, device
        self.run_env = run_env or _env()
        self.rank, self.world = rank, world_size
        self.run_dir = Path(cfg.out)
        self.input_key = "video" if kind == "video" else "image"
        self.frames = frames_per_sample
        self.macs_per_sample = macs_per_sample
        self.mixup = mixup
        self.allow_config_change = allow_config_change
        self.num_classes = num_classes or cfg.model.num_classes
        t = cfg.train
        self.per_process_batch = t.batch_size // world_size
        self.trainable = freeze_parameters(model, t.trainable)  # before DDP and the optimizer see the model
        self.model = model.to(device)
        if t.channels_last:
            fmt = torch.channels_last_3d if kind == "video" else torch.channels_last
            self.model = self.model.to(memory_format=fmt)
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
        self._signal: str | None = None
        self._last_ckpt_time = time.monotonic()
        # test-only fault hooks (reliability.md §4): die by SIGKILL after a step, or make losses NaN from a step
        self._kill_at = int(os.environ.get("VIDPRIOR_FAULT_KILL_AT_STEP", "0") or 0)
        self._kill_once = os.environ.get("VIDPRIOR_FAULT_KILL_ONCE_FILE")  # fire only if this file does not exist
        self._nan_from = int(os.environ.get("VIDPRIOR_FAULT_NAN_FROM_STEP", "0") or 0)

    def _fault_kill(self) -> None:
        if self.rank != 0 or (self._kill_once and Path(self._kill_once).exists()):
            return
        if self._kill_once:
            Path(self._kill_once).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.train.norm_eval:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        if self.cfg.train.trainable is not None:
            for m in frozen_modules(self.model):
                m.eval()

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
                metadata=self._schedule_metadata(),
            )
        self._last_ckpt_time = time.monotonic()
        if sync:
            barrier()
        return path

    def _schedule_metadata(self) -> dict[str, str]:
        return schedule_metadata(self.cfg.optim, self.cfg.train.batch_size, self.steps_per_epoch, self.state.step)

    def resume(self, spec: str | None) -> bool:
        """``spec``: ``"auto"`` (newest valid checkpoint in the run folder, if any) or a checkpoint folder."""
        if not spec:
            return False
        if spec == "auto":
            info = ckpt.find_latest(self.run_dir)
            if info is None:
                return False
            path = info.path
        else:
            path = Path(spec)
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

    def _on_signal(self, signum, frame) -> None:
        self._signal = "term" if signum == signal.SIGTERM else "usr1"

    # ------------------------------------------------------------------ steps
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

    def _grads_finite(self) -> bool:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return True
        return bool(torch.isfinite(torch.stack([g.detach().float().abs().sum() for g in grads]).sum()))

    def train_step(self, batch: dict[str, Any]) -> tuple[float, bool]:
        t = self.cfg.train
        x, y = self._inputs(batch)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.net(x)
            loss = self._loss(logits.float(), y)
        if self._nan_from and self.state.step + 1 >= self._nan_from:
            loss = loss * float("nan")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        finite = bool(torch.isfinite(loss.detach())) and (t.amp == "fp16" or self._grads_finite())
        finite = all_true(finite, self.device)  # the same decision on every process
        if finite:
            if self.cfg.optim.clip_grad:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model, step=self.state.step)
            self.state.nonfinite_in_a_row = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            self.state.nonfinite_total += 1
            self.state.nonfinite_in_a_row += 1
        self.state.step += 1
        self.scheduler.step_update(self.state.step)
        return float(loss.detach()), finite

    # ------------------------------------------------------------------ evaluation
    def _view_scores(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Softmax scores averaged over views: x is (B, V, ...) with a views axis or (B, ...)."""
        multi = x.dim() == (6 if self.kind == "video" else 5)
        if multi:
            b, v = x.shape[:2]
            x = x.flatten(0, 1)  # (B*V, C, T, H, W)
        with self._autocast():
            scores = model(x).float().softmax(dim=-1)
        return scores.view(b, v, -1).mean(dim=1) if multi else scores

    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> dict[str, float]:
        if self.val_set is None:
            return {}
        model = model or self.model
        was = model.training
        model.eval()
        sampler = ResumableSampler(
            len(self.val_set),
            batch_size=max(1, self.per_process_batch),
            rank=self.rank,
            world_size=self.world,
            shuffle=False,
            drop_last=False,
        )
        seen: set[int] = set()
        correct1 = correct5 = total = loss_sum = 0.0
        for batch in self._loader(self.val_set, sampler, max(1, self.per_process_batch), 0):
            x, y = self._inputs(batch)
            scores = self._view_scores(model, x)
            keep = torch.tensor([int(i) not in seen for i in batch["index"]], device=scores.device)
            seen.update(int(i) for i in batch["index"])  # padding repeats samples: count each once per process
            if y.dim() != 1:
                continue
            hits = topk_correct(scores[keep], y[keep])
            correct1 += hits[1]
            correct5 += hits[5]
            total += int(keep.sum())
            loss_sum += float(F.nll_loss(scores[keep].clamp_min(1e-12).log(), y[keep], reduction="sum"))
        if model is self.model and was:
            self._train_mode()
        else:
            model.train(was)
        correct1, correct5, total, loss_sum = all_sum([correct1, correct5, total, loss_sum], self.device)
        if total == 0:
            return {}
        return {"top1": 100 * correct1 / total, "top5": 100 * correct5 / total, "loss": loss_sum / total}

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

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
        t = self.cfg.train
        resumed = self.resume(resume)
        if not resumed:
            seed_everything(t.seed + self.rank)
        old_term = signal.signal(signal.SIGTERM, self._on_signal)
        old_usr1 = signal.signal(signal.SIGUSR1, self._on_signal) if hasattr(signal, "SIGUSR1") else None
        start_wall = time.monotonic() - self.state.wall_time
        stop = False
        try:
            for epoch in range(self.state.epoch, self.cfg.optim.epochs):
                self.state.epoch = epoch
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(epoch)
                self.sampler.set_epoch(epoch, self.state.batch_in_epoch)
                loader = self._loader(self.train_set, self.sampler, self.per_process_batch, epoch)
                bar = None
                if progress and is_main():
                    from tqdm import tqdm

                    bar = tqdm(
                        total=self.steps_per_epoch,
                        initial=self.state.batch_in_epoch,
                        desc=f"epoch {epoch + 1}/{self.cfg.optim.epochs}",
                        unit="step",
                        dynamic_ncols=True,
                        leave=False,
                    )
                self._train_mode()
                for batch in loader:
                    loss, finite = self.train_step(batch)
                    if self._kill_at and self.state.step == self._kill_at:
                        self._fault_kill()
                    self.state.batch_in_epoch += 1
                    samples = self.per_process_batch * self.world
                    self.state.images_seen += samples * self.frames
                    self.state.macs_processed += 3 * self.macs_per_sample * samples  # forward + backward
                    self.state.wall_time = time.monotonic() - start_wall
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.logger.log(
                        "train",
                        self.state.step,
                        epoch=epoch,
                        loss=loss,
                        lr=lr,
                        finite=finite,
                        images_seen=self.state.images_seen,
                        macs=self.state.macs_processed,
                        wall_time=self.state.wall_time,
                    )
                    if bar is not None:
                        bar.update()
                        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                    if self.state.nonfinite_in_a_row >= t.max_nonfinite_steps:
                        last = ckpt.find_latest(self.run_dir)
                        raise NonFiniteError(
                            f"{self.state.nonfinite_in_a_row} steps in a row had a non-finite loss or gradient "
                            f"(step {self.state.step}); stopped. Last good checkpoint: "
                            f"{last.path if last else 'none yet'}. Lower optim.lr or check the data"
                        )
                    if self._should_checkpoint():
                        self.save()
                    if self._signal is not None:
                        self.save(sync=self._signal != "term")
                        if self._signal == "term":
                            stop = True
                            break
                        self._signal = None
                    if t.max_steps is not None and self.state.step >= t.max_steps:
                        stop = True
                        break
                if bar is not None:
                    bar.close()
                if stop:
                    break
                # end of epoch
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
                        _save_best(self.run_dir, self.model, record, self._schedule_metadata())
                self.state.history.append(record)
                self.save()
        finally:
            signal.signal(signal.SIGTERM, old_term)
            if old_usr1 is not None:
                signal.signal(signal.SIGUSR1, old_usr1)
        summary = self.summary(stopped_early=stop)
        summary["stopped_by"] = "SIGTERM" if self._signal == "term" else ("max_steps" if stop else None)
        if is_main():
            self.logger.log("summary", self.state.step, **{k: v for k, v in summary.items() if k != "history"})
            self.logger.close()
            draw_curves(self.run_dir)
        return summary

    def _should_checkpoint(self) -> bool:
        t = self.cfg.train
        if t.ckpt_every_steps and self.state.step % t.ckpt_every_steps == 0:
            return True
        return bool(t.ckpt_every_minutes and time.monotonic() - self._last_ckpt_time >= 60 * t.ckpt_every_minutes)

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
    import json
    import os

    from safetensors.torch import save_file

    tmp = run_dir / "best.safetensors.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)
    os.replace(tmp, run_dir / "best.safetensors")
    (run_dir / "best.json").write_text(json.dumps(record))


def _env() -> dict[str, str]:
    from vidprior.utils.env import environment

    return environment()


def format_summary(summary: dict[str, Any]) -> str:
    rows = [
        ("epochs", summary["epochs_done"]),
        ("optimizer steps", summary["steps"]),
        ("best top-1 (%)", "-" if summary["best_top1"] is None else f"{summary['best_top1']:.2f}"),
        ("images seen", f"{summary['images_seen'] / 1e6:.3f}M"),
        ("multiply-adds processed", f"{summary['macs_processed'] / 1e12:.3f} T"),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("device-hours", f"{summary['device_hours']:.4f}"),
        ("skipped non-finite steps", summary["nonfinite_steps"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


__all__ = [
    "NonFiniteError",
    "TrainState",
    "Trainer",
    "format_summary",
    "freeze_parameters",
    "frozen_modules",
    "recompute_bn_stats",
]
