"""``vidprior data check``: probe every video of a list or folder in parallel and write a manifest.

Each file is opened, its frames counted (from the container index, no full decode) and its size and duration read
(:func:`vidprior.data.decode.probe`). The manifest is JSON lines, one object per file in input order:
``{"path", "ok", "reason", "detail", "num_frames", "fps", "width", "height", "duration"}`` (``reason`` is one of the
codes in :mod:`vidprior.data.errors` for bad files), written atomically. Its SHA-256 identifies the data set in run
records.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vidprior.data.errors import DecodeError


def probe_one(path: str, backend: str = "pyav", min_frames: int = 1) -> dict[str, Any]:
    from vidprior.data.decode import probe

    row: dict[str, Any] = {"path": path, "ok": False, "reason": None, "detail": ""}
    try:
        info = probe(path, backend=backend)
    except DecodeError as e:
        row.update(reason=e.reason, detail=e.detail[:300])
        return row
    row.update(num_frames=info.num_frames, fps=info.fps, width=info.width, height=info.height, duration=info.duration)
    if info.num_frames < min_frames:
        row.update(reason="too_short", detail=f"{info.num_frames} frames, need {min_frames}")
    else:
        row["ok"] = True
    return row


def check_files(
    paths: Sequence[str],
    *,
    backend: str = "pyav",
    workers: int | None = None,
    min_frames: int = 1,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Probe ``paths`` with a process pool; rows in input order."""
    workers = workers or os.cpu_count() or 1
    rows: list[dict[str, Any]] = [{}] * len(paths)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="checking", unit="file", dynamic_ncols=True)
    try:
        if workers == 1:
            for i, p in enumerate(paths):
                rows[i] = probe_one(p, backend, min_frames)
                if bar:
                    bar.update()
        else:
            with concurrent.futures.ProcessPoolExecutor(workers) as pool:
                futures = {pool.submit(probe_one, p, backend, min_frames): i for i, p in enumerate(paths)}
                for f in concurrent.futures.as_completed(futures):
                    rows[futures[f]] = f.result()
                    if bar:
                        bar.update()
    finally:
        if bar:
            bar.close()
    return rows


def write_manifest(rows: Sequence[dict[str, Any]], path: str | Path) -> str:
    """Write rows as JSON lines atomically (temporary file, fsync, rename); return the file's SHA-256."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return hashlib.sha256(data).hexdigest()


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    bad = [r for r in rows if not r.get("ok")]
    return {
        "files": len(rows),
        "ok": len(rows) - len(bad),
        "bad": len(bad),
        "reasons": dict(Counter(r["reason"] for r in bad)),
        "frames": sum(r.get("num_frames") or 0 for r in rows if r.get("ok")),
    }
