"""torchrun / DistributedDataParallel plumbing: process group, rank helpers, a resumable sampler.

vidprior never implements its own distributed layer: processes are started by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``), communicate through ``torch.distributed`` (NCCL on GPU,
gloo on CPU) and train through ``DistributedDataParallel``. One process without torchrun is world size 1.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from vidprior.errors import ConfigError, PeerError, VidpriorError


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


TIMEOUT_ENV = "VIDPRIOR_DIST_TIMEOUT_S"


def peer_timeout_s() -> float:
    """How long a process waits for the others in a collective before giving up: ``VIDPRIOR_DIST_TIMEOUT_S``
    seconds (default 1800). A stuck peer then fails the run with :class:`~vidprior.errors.PeerError` instead of
    hanging it; a peer that exits is noticed by torchrun, which stops the others at once."""
    raw = os.environ.get(TIMEOUT_ENV, "1800")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return value


@contextlib.contextmanager
def peer_errors():
    """Turn a failed or timed-out collective of ``torch.distributed`` into one :class:`PeerError` line."""
    try:
        yield
    except PeerError:
        raise
    except (dist.DistError, RuntimeError) as e:
        text = str(e)
        if not dist.is_initialized() or (not isinstance(e, dist.DistError) and not _PEER_WORDS.search(text)):
            raise
        first = text.strip().splitlines()[0][:300] if text.strip() else type(e).__name__
        me = f"process {dist.get_rank()} of {dist.get_world_size()}"
        if _TIMEOUT_WORDS.search(text):
            why = f"another process did not answer within {peer_timeout_s():g} s ({first}); it may be stuck"
            hint = f"{TIMEOUT_ENV} sets the time-out"
        else:
            why = f"lost the connection to another process ({first}); it probably stopped"
            hint = "its own error is in its log"
        raise PeerError(f"{me}: {why}. {hint}") from None


_PEER_WORDS = re.compile(r"timed? ?out|timeout|connection|peer|gloo|nccl", re.IGNORECASE)
_TIMEOUT_WORDS = re.compile(r"timed? ?out|timeout", re.IGNORECASE)


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (no-op for one process). Returns (rank, world_size)."""
    rank, world, local = env_world()
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        timeout = datetime.timedelta(seconds=peer_timeout_s())
        # After torchrun restarts the workers, the rendezvous store still holds the previous round's addresses;
        # a per-restart key prefix keeps the new processes from connecting to dead peers.
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        store = dist.TCPStore(
            os.environ.get("MASTER_ADDR", "127.0.0.1"),
            int(os.environ.get("MASTER_PORT", "29500")),
            world_size=world,
            is_master=rank == 0 and not agent_store,
            timeout=timeout,
        )
        dist.init_process_group(
            backend=backend,
            store=dist.PrefixStore(f"vidprior/restart{restart}", store),
            rank=rank,
            world_size=world,
            timeout=timeout,
        )
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_true(flag: bool, device: torch.device) -> bool:
    """The same decision on every process: True only if ``flag`` is True everywhere (MIN all-reduce)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ResumableSampler(Sampler[int]):
    """Shuffled (or ordered) indices split across processes, with equal batches everywhere, resumable mid-epoch.

    The order of epoch ``e`` is a pure function of ``(seed, e)``; the list is padded by repeating its start so every
    process gets the same number of whole batches (``drop_last`` drops the remainder instead). With
    ``repeats > 1`` every index appears that many times in a row before the split (repeated augmentation: the
    copies land on different processes, as timm's RepeatAugSampler does), while the epoch length stays
    ``len(dataset)``. ``start_batch`` skips the batches a resumed run has already trained on.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        repeats: int = 1,
    ) -> None:
        if num_samples < 1:
            raise VidpriorError("cannot sample from an empty dataset")
        self.n = num_samples
        self.batch_size = batch_size  # per process
        self.rank, self.world = rank, world_size
        self.shuffle, self.seed, self.drop_last, self.repeats = shuffle, seed, drop_last, repeats
        self.epoch = 0
        self.start_batch = 0
        per_step = batch_size * world_size
        if drop_last:
            self.steps = self.n // per_step
            if self.steps == 0:
                raise VidpriorError(
                    f"dataset of {self.n} samples is smaller than one global batch of {per_step} "
                    f"({batch_size} per process x {world_size}); lower train.batch_size"
                )
        else:
            self.steps = math.ceil(self.n / per_step)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        if self.repeats > 1:
            idx = [i for i in idx for _ in range(self.repeats)][: self.n]
        total = self.steps * self.batch_size * self.world
        while len(idx) < total:
            idx += idx[: total - len(idx)]
        return idx[:total]

    def __iter__(self) -> Iterator[int]:
        idx = self.order()[self.rank :: self.world]  # (steps * batch_size,) for this process
        return iter(idx[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return (self.steps - self.start_batch) * self.batch_size
