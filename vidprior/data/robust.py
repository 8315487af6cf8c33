"""Bad files never crash a run, and a broken data set never trains silently.

A dataset built on :class:`RobustDataset` never returns ``None``: when a file fails (see the reason codes in
:mod:`vidprior.data.errors`) it records the file in a skipped-files report and returns another sample, chosen as a
pure function of ``(seed, epoch, index, attempt)`` so that the substitution is the same on every run and resume.
Every sample says which bad files it met on the way in its ``"skipped"`` field (a JSON list of
``[path, reason, detail]``; ``"[]"`` when none), so the process that receives the batches can count them.

A per-sample decode time-out abandons a hanging file: the decode runs on a daemon thread, which is left behind (it
never delays the process's exit) and replaced by a fresh one.

The bad-file limit (more than ``max_bad_fraction`` of the files bad: :class:`DataQualityError`) is counted by a
:class:`BadFileBudget`. Read through :func:`vidprior.data.loader.checked_loader`, the budget lives in the main process
and counts the ``"skipped"`` fields as batches arrive, in batch order: the run stops at the same bad file whatever
the number of DataLoader workers. Read directly (``ds[i]``), the dataset counts them itself. ``max_consecutive``
attempts in a row failing (a broken decoder, a missing data root) stop the process that meets them.

Each process appends to the same JSON-lines report (one line per bad file per process; lines are short single
writes, so processes do not interleave within a line).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import threading
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


def append_report(report_path: str | Path | None, path: str, reason: str, detail: str) -> None:
    """One JSON line ``{"path", "reason", "detail"}`` appended to the skipped-files report (nothing if no report)."""
    if report_path is None:
        return
    line = json.dumps({"path": path, "reason": reason, "detail": detail[:500]})
    with open(report_path, "a") as f:
        f.write(line + "\n")


class BadFileBudget:
    """The bad-file limit: more than ``max_bad_fraction * total`` distinct bad files raises :class:`DataQualityError`
    (at the limit, loading goes on). Feed it the ``"skipped"`` field of each batch (:meth:`update`) or single
    failures (:meth:`add`), in a fixed order, in one process."""

    def __init__(self, *, total: int, max_bad_fraction: float = 0.01) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise VidpriorError(f"max_bad_fraction={max_bad_fraction!r}: expected a fraction in [0, 1]")
        self.total = total
        self.max_bad_fraction = max_bad_fraction
        self.bad: dict[str, tuple[str, str]] = {}

    @property
    def allowed(self) -> float:
        return self.max_bad_fraction * self.total

    def add(self, path: str, reason: str, detail: str = "") -> None:
        self.bad.setdefault(path, (reason, detail))
        self.check()

    def update(self, batch: dict[str, Any]) -> None:
        """Count the bad files that the samples of ``batch`` (a collated dict, or one sample) met."""
        field = batch.get("skipped") if isinstance(batch, dict) else None
        if field is None:
            return
        for text in [field] if isinstance(field, str) else field:
            for path, reason, detail in json.loads(text):
                self.bad.setdefault(path, (reason, detail))
        self.check()

    def summary(self) -> str:
        counts = Counter(reason for reason, _ in self.bad.values())
        examples = "; ".join(f"{p}: {r} {d}".strip() for p, (r, d) in list(self.bad.items())[:3])
        return f"reasons {dict(counts)}; e.g. {examples}"

    def check(self) -> None:
        if len(self.bad) > self.allowed:
            raise DataQualityError(
                f"{len(self.bad)} of {self.total} files are bad, more than max_bad_fraction="
                f"{self.max_bad_fraction:g} allows ({self.summary()}). Run `vidprior data check` on the list to see "
                "every bad file, fix or drop them, or raise max_bad_fraction"
            )


class BadFileTracker:
    """Counts the bad files one process meets, writes the report, and decides when to stop: ``max_consecutive``
    failures in a row, and (unless ``check_fraction`` is off because a :class:`BadFileBudget` counts them
    elsewhere) the bad-file limit."""

    def __init__(
        self,
        *,
        total: int,
        max_bad_fraction: float = 0.01,
        max_consecutive: int = 50,
        report_path: str | Path | None = None,
    ) -> None:
        self._budget = BadFileBudget(total=total, max_bad_fraction=max_bad_fraction)
        self.max_consecutive = max_consecutive
        self.report_path = Path(report_path) if report_path is not None else None
        self.consecutive = 0
        self.check_fraction = True

    @property
    def bad(self) -> dict[str, tuple[str, str]]:
        return self._budget.bad

    @property
    def total(self) -> int:
        return self._budget.total

    @total.setter
    def total(self, value: int) -> None:
        self._budget.total = value

    @property
    def max_bad_fraction(self) -> float:
        return self._budget.max_bad_fraction

    @max_bad_fraction.setter
    def max_bad_fraction(self, value: float) -> None:
        self._budget.max_bad_fraction = value

    def ok(self) -> None:
        self.consecutive = 0

    def record(self, error: DecodeError) -> None:
        self.consecutive += 1
        if error.path not in self.bad:
            self.bad[error.path] = (error.reason, error.detail)
            append_report(self.report_path, error.path, error.reason, error.detail)
        self.check()

    def check(self) -> None:
        if self.consecutive >= self.max_consecutive:
            raise DataQualityError(
                f"{self.consecutive} samples in a row failed to load: the decoder or the data root looks broken "
                f"({self._budget.summary()})"
            )
        if self.check_fraction:
            self._budget.check()


class _DecodeThread:
    """One daemon thread that runs decodes handed to it; abandoned (left running) when a decode times out."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="vidprior-decode", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            fn, args, done = self.jobs.get()
            try:
                done.put((True, fn(*args)))
            except BaseException as e:  # handed to the caller, raised there
                done.put((False, e))

    def run(self, timeout: float, fn, *args):
        """``fn(*args)`` on the thread; ``TimeoutError`` if no result within ``timeout`` seconds."""
        done: queue.SimpleQueue = queue.SimpleQueue()
        self.jobs.put((fn, args, done))
        try:
            ok, value = done.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if not ok:
            raise value
        return value


class RobustDataset(Dataset):
    """Base class: subclasses implement ``_load(index, rng) -> dict`` and raise ``DecodeError`` for bad files.

    ``known_bad`` (path -> (reason, detail)) lists files to treat as bad without opening them: the loader puts a
    file there after its decoder crashed a worker process (:func:`vidprior.data.loader.checked_loader`).
    """

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
        self.known_bad: dict[str, tuple[str, str]] = {}
        self.inflight_dir: str | None = None  # set by the loader: where each worker process notes the file it reads
        self._thread: _DecodeThread | None = None
        self._thread_pid: int | None = None

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
        path = self.path_of(index)
        if path in self.known_bad:
            reason, detail = self.known_bad[path]
            raise DecodeError(path, reason, detail)
        self._note_inflight(path)
        try:
            if self.decode_timeout is None:
                return self._run(index, seed)
            if self._thread is None or self._thread_pid != os.getpid():  # one per (worker) process
                self._thread, self._thread_pid = _DecodeThread(), os.getpid()
            try:
                return self._thread.run(self.decode_timeout, self._run, index, seed)
            except TimeoutError:
                self._thread = None  # abandon the hanging decode (a daemon thread); the next sample gets a fresh one
                raise DecodeError(path, TIMEOUT, f"no result within {self.decode_timeout:g} s") from None
        finally:
            self._note_inflight("")

    def _note_inflight(self, path: str) -> None:
        """Write the file being read to ``<inflight_dir>/<pid>`` (worker processes only), so that the main process can
        name it if this process dies in the decoder."""
        if self.inflight_dir is None or torch.utils.data.get_worker_info() is None:
            return
        try:
            with open(os.path.join(self.inflight_dir, str(os.getpid())), "w") as f:
                f.write(path)
        except OSError:
            pass  # best effort: a crash would then be reported without the file's name

    def path_of(self, index: int) -> str:
        return str(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        current = index
        met: list[list[str]] = []
        for attempt in range(self.max_attempts):
            try:
                sample = self._call(current, stable_seed("sample", self.seed, self.epoch, index, attempt))
            except DecodeError as e:
                met.append([e.path, e.reason, e.detail[:300]])
                self.tracker.record(e)
                current = self.substitute(index, attempt + 1)
                continue
            self.tracker.ok()
            sample["index"] = index
            sample["substituted_by"] = current  # the index whose data this is (== index unless substituted)
            sample["skipped"] = json.dumps(met)
            return sample
        raise DataQualityError(f"no loadable sample after {self.max_attempts} attempts for index {index}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_thread"] = None  # threads do not cross into DataLoader workers
        state["_thread_pid"] = None
        return state
