"""Reading a robust dataset through a DataLoader: one bad-file count for all workers, one-line errors, and a worker
process killed by its decoder (a segfault) named and survived.

:func:`checked_loader` wraps a ``torch.utils.data.DataLoader`` over a
:class:`~vidprior.data.robust.RobustDataset`; iterate it like the loader (``len`` is the loader's). While it iterates:

* **Bad-file budget in the main process.** The dataset's own per-process limit is turned off; the ``"skipped"``
  field of each batch goes to one :class:`~vidprior.data.robust.BadFileBudget` as the batches arrive, in batch order.
  Batches and their substitutions are pure functions of ``(seed, epoch, index)``, so the run stops at the same bad
  file with 0, 2 or 4 workers (a per-worker count would let ``workers`` times more bad files through).
* **One-line errors.** A :class:`~vidprior.errors.VidpriorError` raised in a worker reaches the main process as the
  DataLoader's "Caught X in DataLoader worker process N. Original Traceback ..." block; it is raised again as the
  same error class with its own one-line message.
* **A worker killed in the decoder.** A crash inside FFmpeg (or another backend's native code) kills the worker
  process; no Python code runs to say which file did it. So each worker writes the path it is about to read to a
  small file named after its pid (``<tmp>/<pid>``, cleared after each read) and the main process, told by the
  DataLoader which pid died, reads the name there. That file is marked bad (reason ``crashed``; it counts in the
  budget and goes to the skipped-files report), the DataLoader is rebuilt over the batches not yet delivered
  (the batch index lists are drawn once, up front), and its new workers substitute the file without opening it.
  PyTorch raises a worker's death from a ``SIGCHLD`` handler at whatever line the main thread is running; while
  this loader iterates, that handler is set aside, and the DataLoader's own liveness check (every 5 s while it waits
  for data) reports the death where it can be handled. With ``num_workers=0`` a crash kills the main process:
  nothing can be survived there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from vidprior.data.errors import CRASHED, REASONS, DecodeError
from vidprior.data.robust import BadFileBudget, RobustDataset, append_report
from vidprior.errors import VidpriorError

_CAUGHT = re.compile(r"Caught (\w+) in DataLoader worker process (\d+)\.")
_DEAD = re.compile(r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\)")


def worker_error(error: BaseException) -> Exception | None:
    """The one-line error for a vidprior error re-raised by the DataLoader from a worker, or None if ``error`` is
    something else."""
    text = str(error)
    m = _CAUGHT.match(text)
    if m is None:
        return None
    name = m.group(1)
    at = text.rfind(f"{name}: ")  # the last line of the worker's traceback: "module.Name: message"
    if at < 0:
        return None
    message = text[at + len(name) + 2 :].strip()
    if name == "DecodeError":
        parts = re.fullmatch(rf"(.*): ({'|'.join(REASONS)})(?: \((.*)\))?", message, re.DOTALL)
        if parts:
            return DecodeError(parts.group(1), parts.group(2), parts.group(3) or "")
        return VidpriorError(message)
    cls = type(error)
    if isinstance(error, VidpriorError):
        try:
            return cls(message)
        except Exception:
            return VidpriorError(message)
    return None


def _sigchld_aside():
    """Set PyTorch's SIGCHLD handler aside (main thread only); returns what to restore."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGCHLD"):
        return None
    return signal.signal(signal.SIGCHLD, signal.SIG_DFL)


class CheckedLoader:
    """A DataLoader read through :func:`checked_loader` (see the module docstring)."""

    def __init__(self, loader: DataLoader, budget: BadFileBudget | None = None) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.robust = isinstance(self.dataset, RobustDataset)
        if budget is None and self.robust:  # one per dataset for the run: a bad file counts once, in any epoch
            tracker = self.dataset.tracker
            budget = self.dataset.__dict__.get("_loader_budget")
            if budget is None or budget.max_bad_fraction != tracker.max_bad_fraction:
                budget = BadFileBudget(total=tracker.total, max_bad_fraction=tracker.max_bad_fraction)
                self.dataset._loader_budget = budget
        self.budget = budget

    def __len__(self) -> int:
        return len(self.loader)

    def _rebuild(self, batches: list[list[int]]) -> DataLoader:
        old = self.loader
        return DataLoader(
            old.dataset,
            batch_sampler=batches,
            num_workers=old.num_workers,
            collate_fn=old.collate_fn,
            pin_memory=old.pin_memory,
            timeout=old.timeout,
            worker_init_fn=old.worker_init_fn,
            multiprocessing_context=old.multiprocessing_context,
            generator=old.generator,
            prefetch_factor=old.prefetch_factor if old.num_workers > 0 else None,
            persistent_workers=old.persistent_workers,
            pin_memory_device=old.pin_memory_device,
        )

    def __iter__(self) -> Iterator[Any]:
        if not self.robust or self.loader.batch_sampler is None:
            yield from self._batches(self.loader, count=self.robust)
            return
        ds: RobustDataset = self.dataset
        batches = [list(b) for b in self.loader.batch_sampler]  # drawn once: the loader is rebuilt from them
        inflight = tempfile.mkdtemp(prefix="vidprior-inflight-") if self.loader.num_workers > 0 else None
        ds.tracker.check_fraction = False  # counted here, in batch order, for all workers together
        ds.inflight_dir = inflight
        done = 0
        try:
            while done < len(batches):
                try:
                    for batch in self._batches(self._rebuild(batches[done:]), count=True):
                        done += 1
                        yield batch
                except RuntimeError as e:
                    self._crashed(e, inflight)  # raises unless the dead worker's file is known: then go on
        finally:
            ds.tracker.check_fraction = True
            ds.inflight_dir = None
            if inflight is not None:
                shutil.rmtree(inflight, ignore_errors=True)

    def _batches(self, loader: DataLoader, *, count: bool) -> Iterator[Any]:
        it = iter(loader)  # creating it installs PyTorch's SIGCHLD handler (once per process): set it aside after
        previous = _sigchld_aside() if loader.num_workers > 0 else None
        try:
            while True:
                try:
                    batch = next(it)
                except StopIteration:
                    return
                except Exception as e:
                    one_line = worker_error(e)
                    if one_line is not None:
                        raise one_line from None
                    raise
                if count and self.budget is not None:
                    self.budget.update(batch)
                yield batch
        finally:
            del it  # shuts its workers down (before PyTorch's SIGCHLD handler comes back)
            if previous is not None:
                signal.signal(signal.SIGCHLD, previous)

    def _crashed(self, error: RuntimeError, inflight: str | None) -> None:
        m = _DEAD.search(str(error))
        if m is None or inflight is None:
            raise error
        pids = [p.strip() for p in m.group(1).split(",") if p.strip()]
        paths = []
        for pid in pids:
            try:
                with open(os.path.join(inflight, pid)) as f:
                    paths.append(f.read())
            except OSError:
                pass
        paths = [p for p in paths if p]
        ds: RobustDataset = self.dataset
        if not paths or any(p in ds.known_bad for p in paths):
            raise VidpriorError(
                f"a DataLoader worker process died ({str(error).splitlines()[0]}) while it was not reading a file "
                "this loader can name; run with data.workers=0 to see where"
            ) from None
        detail = f"the decoding process died: {str(error).splitlines()[0]}"
        for path in paths:
            ds.known_bad[path] = (CRASHED, detail)
            append_report(ds.tracker.report_path, path, CRASHED, detail)
            if self.budget is not None:
                self.budget.add(path, CRASHED, detail)


def checked_loader(loader: DataLoader, budget: BadFileBudget | None = None) -> CheckedLoader:
    """Iterate ``loader`` with the bad-file budget counted in this process, one-line worker errors, and worker crashes
    survived within the budget (see the module docstring). ``budget``: share one across epochs (default: a new one
    with the dataset's limits)."""
    return CheckedLoader(loader, budget)
