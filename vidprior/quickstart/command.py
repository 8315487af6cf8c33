"""The ``vidprior quickstart`` command: its options and what it prints."""

from __future__ import annotations

import argparse
import time


def add_arguments(qs: argparse.ArgumentParser) -> None:
    qs.add_argument("--out", default="quickstart", help="folder for data, runs and the report (default ./quickstart)")
    which = qs.add_mutually_exclusive_group()
    which.add_argument(
        "--full", action="store_true", help="every model, task and setting, 3 seeds, no time budget (see docs)"
    )
    which.add_argument(
        "--smoke", action="store_true", help="a tiny run that checks the installation (meaningless numbers)"
    )
    qs.add_argument("--seeds", type=int, default=None, help="at most this many seeds (default: the plan's, 3)")
    qs.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="minutes; a seed of a model starts only if it is expected to fit (default 9; --full: none)",
    )


def main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vidprior.quickstart.run import DEFAULT_BUDGET_MIN, PLANS, run

    t0 = time.monotonic()
    plan = PLANS["full" if args.full else "smoke" if args.smoke else "default"]
    if args.seeds is not None:
        plan = replace(plan, seeds=args.seeds)
    budget = args.time_budget if args.time_budget is not None else (None if args.full else DEFAULT_BUDGET_MIN)
    summary = run(args.out, plan=plan, time_budget_min=budget)
    print(summary["table_markdown"])
    print(f"\nseeds {summary['seeds']}, {summary['date']}, vidprior {summary['version']}")
    print(f"wall time {(time.monotonic() - t0) / 60:.1f} min; report: {args.out}/report/report.md")
    return 0
