"""One benchmark command: every performance comparison of the project, written to ``benchmarks/RESULTS.md``.

    python -m benchmarks                      # full run (minutes to hours on a 2-core CPU)
    python -m benchmarks --small              # tiny models and shapes: seconds; run by tests/test_bench_smoke.py
    python -m benchmarks --only models,layer  # some sections: layer, models, compile, memory, reference, decode
    python -m benchmarks --out /tmp/R.md      # write elsewhere

Sections (A and B always timed interleaved in the same run, medians; ``OMP_WAIT_POLICY=PASSIVE`` is set before
torch loads, so that a busy machine does not stall each OpenMP region):

* ``layer``: STSConv3d vs nn.Conv3d on the paper's layer shapes, inference (eval, fused form) and forward+backward;
* ``models``: each backbone with STS vs without (same weights), training step and inference, NCDHW and
  channels_last_3d; also channels_last_3d vs NCDHW without STS;
* ``compile``: torch.compile (Inductor) compile time and speed with and without STS;
* ``memory``: peak resident memory of a training step with and without STS (fresh processes);
* ``reference``: vidprior models vs torchvision and PyTorchVideo 0.1.5 (``benchmarks/setup.sh``) at equal
  parameters and multiply-adds, asserted before timing;
* ``decode``: ``benchmarks/decode.py`` (vidprior's reader vs naive PyAV, decord and torchcodec where installed).

Goals (issue 13) are marked met or not met in the written file, with the measured numbers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks import _sections
from vidprior.utils.env import environment

SECTIONS = ("layer", "models", "compile", "memory", "reference", "decode")


def header(args, env: dict[str, str]) -> str:
    try:
        load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "torchvision", "av", "decord", "torchcodec") if k in env)
    mode = "small (tiny models, smoke test)" if args.small else "full"
    return (
        f"# Benchmark results\n\nWritten by `python -m benchmarks{' --small' if args.small else ''}"
        f"{' --only ' + args.only if args.only else ''}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
        f"- Machine: {platform.machine()}, {platform.processor() or 'cpu'}, {env['cpu_count']} cores, "
        f"torch threads {torch.get_num_threads()}, load average (1/5/15 min) at start {load}; device CPU, float32.\n"
        f"- Python {env['python']}; {versions}.\n"
        f"- Mode: {mode}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. Ratios are same-run, A/B "
        "interleaved, medians; absolute times on a shared machine move by tens of percent between runs.\n"
        "- No GPU was lent to this run: issue 13's goal 6 (bf16 tables, MFU) is not measured.\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="tiny models and shapes (seconds)")
    p.add_argument("--only", help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per comparison")
    p.add_argument("--models", default=None, help="comma-separated backbones (default: all six, or tiny ones)")
    args = p.parse_args(argv)
    only = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        p.error(f"--only {unknown[0]!r}: expected some of {', '.join(SECTIONS)}")
    env = environment()
    ctx = _sections.Context.make(small=args.small, repeats=args.repeats, models=args.models)
    parts = [header(args, env)]
    goals: list[tuple[str, str, str]] = []
    for name in SECTIONS:
        if name not in only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        text, section_goals = getattr(_sections, name)(ctx)
        parts.append(f"## {name}\n\n{text.rstrip()}\n\n_({time.perf_counter() - t0:.0f} s)_\n")
        goals += section_goals
    if goals:
        rows = "\n".join(f"| {g} | {status} | {why} |" for g, status, why in goals)
        parts.insert(1, f"## Goals (issue 13)\n\n| goal | status | measured / why |\n| --- | --- | --- |\n{rows}\n")
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
