"""Bad files never crash a run, and a broken data set never trains silently (reliability.md §4.3).

A dataset built on :class:`RobustDataset` never returns ``None``: when a file fails (see the reason codes in
:mod:`vidprior.data.errors`) it records the file in a skipped-files report and returns another sample, chosen as a
pure function of ``(seed, epoch, index, attempt)`` so that the substitution is the same on every run and resume.
A per-sample decode time-out abandons a hanging file. Loading stops with :class:`DataQualityError`, naming the root
cause, when more than ``max_bad_fraction`` of the files are bad, or when ``max_consecutive`` attempts in a row fail
(a broken decoder is caught within that many samples).

Each DataLoader worker keeps its own counters and appends to the same JSON-lines report (one line per bad file per
worker; lines are short single writes, so workers do not interleave within a line).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vidprior.data.errors import TIMEOUT, DecodeError
from vidprior.errors import VidpriorError


class DataQualityError(VidpriorError):
    """Too many bad files, or every file failing: training must not go on silently."""


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed from the parts, the same in every process and Python run (unlike ``hash``)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class BadFileTracker:
    """Counts bad files, writes the report, and decides when to stop."""

    def __init__(
        self,
        *,
        total: int,
        max_bad_fraction: float = 0.01,
        max_consecutive: int = 50,
        report_path: str | Path | None = None,
    ) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise VidpriorError(f"max_bad_fraction={max_bad_fraction!r}: expected a fraction in [0, 1]")
        self.total = total
        self.max_bad_fraction = max_bad_fraction
        self.max_consecutive = max_consecutive
        self.report_path = Path(report_path) if report_path is not None else None
        self.bad: dict[str, tuple[str, str]] = {}
        self.consecutive = 0

    def ok(self) -> None:
        self.consecutive = 0

    def record(self, error: DecodeError) -> None:
        self.consecutive += 1
        if error.path not in self.bad:
            self.bad[error.path] = (error.reason, error.detail)
            if self.report_path is not None:
                line = json.dumps({"path": error.path, "reason": error.reason, "detail": error.detail[:500]})
                with open(self.report_path, "a") as f:
                    f.write(line + "\n")
        self.check()

    def _summary(self) -> str:
        counts = Counter(reason for reason, _ in self.bad.values())
        examples = "; ".join(f"{p}: {r} {d}".strip() for p, (r, d) in list(self.bad.items())[:3])
        return f"reasons {dict(counts)}; e.g. {examples}"

    def check(self) -> None:
        if self.consecutive >= self.max_consecutive:
            raise DataQualityError(
                f"{self.consecutive} samples in a row failed to load: the decoder or the data root looks broken "
                f"({self._summary()})"
            )
        allowed = self.max_bad_fraction * self.total
        if len(self.bad) > allowed:
            raise DataQualityError(
                f"{len(self.bad)} of {self.total} files are bad, more than max_bad_fraction="
                f"{self.max_bad_fraction:g} allows ({self._summary()}). Run `vidprior data check` on the list to see "
                "every bad file, fix or drop them, or raise max_bad_fraction"
            )


class RobustDataset(Dataset):
    """Base class: subclasses implement ``_load(index, rng) -> dict`` and raise ``DecodeError`` for bad files."""

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        max_consecutive: int = 50,
        decode_timeout: float | None = None,
        report_path: str | Path | None = None,
        max_attempts: int = 100,
    ) -> None:
        if num_samples < 1:
            raise VidpriorError("the dataset is empty")
        if decode_timeout is not None and decode_timeout <= 0:
            raise VidpriorError(f"decode_timeout={decode_timeout!r}: expected seconds > 0 or None")
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.decode_timeout = decode_timeout
        self.max_attempts = max_attempts
        self.tracker = BadFileTracker(
            total=num_samples,
            max_bad_fraction=max_bad_fraction,
            max_consecutive=max_consecutive,
            report_path=report_path,
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_pid = None

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Sampling and substitutions depend on the epoch; call before each epoch (with non-persistent workers)."""
        self.epoch = int(epoch)

    @property
    def skipped(self) -> dict[str, tuple[str, str]]:
        """Bad files this process met: path -> (reason, detail)."""
        return dict(self.tracker.bad)

    def _load(self, index: int, rng: random.Random) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def substitute(self, index: int, attempt: int) -> int:
        """The index used instead of a bad one: a pure function of (seed, epoch, index, attempt)."""
        return random.Random(stable_seed("substitute", self.seed, self.epoch, index, attempt)).randrange(len(self))

    def _run(self, index: int, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        with torch.random.fork_rng(devices=[]):  # transforms draw from torch's RNG: make them reproducible too
            torch.manual_seed(seed)
            return self._load(index, rng)

    def _call(self, index: int, seed: int) -> dict[str, Any]:
        if self.decode_timeout is None:
            return self._run(index, seed)
        if self._executor is None or self._executor_pid != os.getpid():  # one per (worker) process
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vidprior-decode")
            self._executor_pid = os.getpid()
        future = self._executor.submit(self._run, index, seed)
        try:
            return future.result(timeout=self.decode_timeout)
        except concurrent.futures.TimeoutError:
            # abandon the hanging decode: its thread finishes (or not) on its own; the next sample gets a fresh one
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            raise DecodeError(self.path_of(index), TIMEOUT, f"no result within {self.decode_timeout:g} s") from None

    def path_of(self, index: int) -> str:
        return str(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        current = index
        for attempt in range(self.max_attempts):
            try:
                sample = self._call(current, stable_seed("sample", self.seed, self.epoch, index, attempt))
            except DecodeError as e:
                self.tracker.record(e)
                current = self.substitute(index, attempt + 1)
                continue
            self.tracker.ok()
            sample["index"] = index
            if current != index:
                sample["substituted_by"] = current
            return sample
        raise DataQualityError(f"no loadable sample after {self.max_attempts} attempts for index {index}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_executor"] = None  # threads do not cross into DataLoader workers
        return state
