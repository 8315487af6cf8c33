"""The ``vidprior`` command line (also ``python -m vidprior``).

Every sub-command is one row of :data:`COMMANDS`: ``(name, help, add_arguments, run)``, where ``add_arguments``
fills the sub-command's :class:`argparse.ArgumentParser` and ``run`` takes the parsed arguments and returns the exit
status. A new command is one row (plus its test). Errors derived from :class:`vidprior.errors.VidpriorError` are
printed as one line and exit with status 2 (no traceback).

Run commands (``pretrain``, ``finetune``, ``test``) take ``key=value`` config overrides anywhere on the line: before
or after options, also after ``--resume auto``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from vidprior import __version__
from vidprior.analysis.commands import COMMANDS as ANALYSIS_COMMANDS
from vidprior.errors import VidpriorError

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _cmd_env(args: argparse.Namespace) -> int:
    from vidprior.utils.env import environment

    info = environment()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from vidprior.models import create_model, list_models
    from vidprior.utils.complexity import profile

    names = list_models(args.pattern)
    if not names:
        raise VidpriorError(f"no model matches {args.pattern!r}; `vidprior models` lists all")
    rows = []
    for name in names:
        with torch.device("meta"):
            model = create_model(name, num_classes=args.num_classes)
        frames, interval = model.default_clip
        p = profile(model, (1, 3, frames, args.crop, args.crop))
        rows.append(
            {
                "name": name,
                "params_m": round(p.params / 1e6, 2),
                "gmacs": round(p.macs / 1e9, 2),
                "clip": f"{frames}x{interval}",
                "sts_layers": len(model.sts_layers),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<18} {'params (M)':>10} {'GMACs':>8} {'clip':>6} {'STS layers':>10}")
    for r in rows:
        print(f"{r['name']:<18} {r['params_m']:>10.2f} {r['gmacs']:>8.2f} {r['clip']:>6} {r['sts_layers']:>10}")
    print(
        f"\nGMACs: one clip at {args.crop}x{args.crop} (conv, fc and batch norm; one multiply-add = 1); "
        f"{args.num_classes} classes; clip = frames x sampling interval; STS layers: the paper's placement."
    )
    return 0


def _data_paths(target: str, root: str | None) -> list[str]:
    from pathlib import Path

    from vidprior.data.lists import read_video_list, scan_videos

    p = Path(target)
    if p.is_dir():
        records = scan_videos(p)
        if not records:
            raise VidpriorError(f"{p}: no video files found")
    elif p.is_file():
        records = read_video_list(p, root=root)
    else:
        raise VidpriorError(f"{p}: no such list file or folder")
    return [r.path for r in records]


def _cmd_data_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidprior.data.check import check_files, summarize, write_manifest

    paths = _data_paths(args.target, args.root)
    rows = check_files(paths, backend=args.backend, workers=args.workers, min_frames=args.min_frames)
    out = Path(args.out) if args.out else Path(args.target).with_suffix(".manifest.jsonl")
    if Path(args.target).is_dir() and not args.out:
        out = Path(args.target) / "manifest.jsonl"
    digest = write_manifest(rows, out)
    summary = summarize(rows)
    print(f"{summary['files']} files: {summary['ok']} ok, {summary['bad']} bad {summary['reasons'] or ''}")
    for r in rows:
        if not r["ok"]:
            print(f"  {r['reason']:<16} {r['path']}  {r['detail']}")
    print(f"manifest: {out} (sha256 {digest[:16]})")
    return 1 if summary["bad"] else 0


def _cmd_data_reencode(args: argparse.Namespace) -> int:
    from vidprior.data.reencode import reencode_tree

    summary = reencode_tree(args.src, args.dst, short_side=args.short_side, gop=args.gop, workers=args.workers)
    print(summary)
    failed = getattr(summary, "failed", None) or (summary.get("failed") if isinstance(summary, dict) else None)
    return 1 if failed else 0


def _load_run_config(args: argparse.Namespace, task: str):
    from vidprior.engine.config import load_config

    overrides = [f"task={task}", *args.overrides]
    return load_config(args.config, overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from vidprior.engine import jobs
    from vidprior.engine.train_state import format_summary

    cfg = _load_run_config(args, args.command)
    if args.dry_run:
        print(jobs.dry_run(cfg))
        return 0
    summary = jobs.run_training(
        cfg, resume=args.resume, allow_config_change=args.allow_config_change, allow_restart=args.allow_restart
    )
    from vidprior.engine.distributed import cleanup, is_main

    if is_main():
        print(format_summary(summary))
        print(f"run folder: {cfg.out}")
    cleanup()
    if summary.get("stopped_by") == "SIGTERM":
        print("stopped by SIGTERM after saving a checkpoint; continue with --resume auto", file=sys.stderr)
        return 143
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    from vidprior.engine import jobs

    if args.weights:  # the model is built empty and takes every tensor from --weights: init.* is not used
        args.overrides = [*args.overrides, "init.source=scratch", "init.checkpoint=null"]
    cfg = _load_run_config(args, "test")
    if args.dry_run:
        print(jobs.dry_run(cfg))
        return 0
    metrics = jobs.run_test(cfg, weights=args.weights)
    for k, v in metrics.items():
        print(f"{k:<20} {v:.2f}" if isinstance(v, float) else f"{k:<20} {v}")
    print(f"predictions: {cfg.out}/predictions.jsonl")
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidprior.engine.budget import draw, format_table, plan

    settings = ["fixed", "sota"] if args.setting == "both" else [args.setting]
    rows = [
        plan(
            frames=f,
            scratch_epochs=args.scratch_epochs,
            video=args.dataset,
            finetune_epochs=args.finetune_epochs,
            setting=s,
            pretrain_epochs=args.pretrain_epochs,
        )
        for s in settings
        for f in args.frames
    ]
    print(format_table(rows))
    if args.png:
        print(f"figure: {draw(rows, Path(args.png))}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from vidprior.quickstart.command import main

    return main(args)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML recipe (configs/..., or the name of a packaged recipe)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config values, e.g. optim.lr=0.1")
    p.add_argument("--dry-run", action="store_true", help="check config, output folder and the first files; exit")


def _args_train(p: argparse.ArgumentParser) -> None:
    _add_run_args(p)
    p.add_argument("--resume", help="'auto' (newest valid checkpoint in the run folder) or a checkpoint folder")
    p.add_argument("--allow-config-change", action="store_true", help="resume even if the config differs")
    p.add_argument(
        "--allow-restart", action="store_true", help="with --resume auto: start over when every checkpoint is damaged"
    )


def _args_test(p: argparse.ArgumentParser) -> None:
    _add_run_args(p)
    p.add_argument("--weights", help="model weights (.safetensors or checkpoint) to test")


def _args_env(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print as JSON")


def _args_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="glob on the model name, e.g. 'slow*'")
    p.add_argument("--crop", type=int, default=256, help="spatial size for the multiply-add count (256)")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--json", action="store_true", help="print as JSON")


def _args_data(p: argparse.ArgumentParser) -> None:
    from vidprior.data.backends import BACKENDS

    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    check = sub.add_parser(
        "check", help="probe every video (opens, counts frames, size, duration) and write a manifest of bad files"
    )
    check.add_argument("target", help="a video list ('path label' lines) or a folder of videos")
    check.add_argument("--root", help="directory the list's paths are relative to")
    check.add_argument("--out", help="manifest path (default: next to the list, or <folder>/manifest.jsonl)")
    check.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    check.add_argument("--backend", default="pyav", choices=list(BACKENDS))
    check.add_argument("--min-frames", type=int, default=1, help="fewer frames count as too_short")
    check.set_defaults(data_run=_cmd_data_check)
    reenc = sub.add_parser(
        "reencode", help="rewrite videos to a short side (320) and keyframe interval; safe to interrupt and re-run"
    )
    reenc.add_argument("src", help="folder of source videos")
    reenc.add_argument("dst", help="output folder (mirrors the source tree)")
    reenc.add_argument("--short-side", type=int, default=320)
    reenc.add_argument("--gop", type=int, default=None, help="keyframe interval (e.g. 16 for fast seeking)")
    reenc.add_argument("--workers", type=int, default=None)
    reenc.set_defaults(data_run=_cmd_data_reencode)


def _cmd_data(args: argparse.Namespace) -> int:
    return args.data_run(args)


def _args_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--scratch-epochs", type=float, default=100, help="from-scratch epochs to match")
    p.add_argument("--finetune-epochs", type=float, default=50)
    p.add_argument("--pretrain-epochs", type=float, default=None, help="fix the pre-training epochs")
    p.add_argument("--dataset", default="k400", help="k400, ssv2 or a number of clips")
    p.add_argument("--setting", default="both", choices=["fixed", "sota", "both"])
    p.add_argument("--png", help="write the Fig. 3-style bar chart here")


def _args_quickstart(p: argparse.ArgumentParser) -> None:
    from vidprior.quickstart.command import add_arguments

    add_arguments(p)


COMMANDS: list[Command] = [
    ("env", "print versions of Python, PyTorch, decoders and the accelerator", _args_env, _cmd_env),
    (
        "models",
        "list the registered models with parameters, multiply-adds and STS layers",
        _args_models,
        _cmd_models,
    ),
    ("data", "check and prepare video data", _args_data, _cmd_data),
    ("pretrain", "pre-train a model's 2D counterpart on images", _args_train, _cmd_train),
    (
        "finetune",
        "fine-tune a 3D model on video (from scratch, an image or a video checkpoint)",
        _args_train,
        _cmd_train,
    ),
    ("test", "multi-view test: top-1/top-5/mean-class accuracy and a predictions file", _args_test, _cmd_test),
    ("budget", "plan a fair budget: pre-training epochs that match a from-scratch run", _args_budget, _cmd_budget),
    (
        "quickstart",
        "the paper's comparison in miniature on built-in digit videos (minutes, CPU)",
        _args_quickstart,
        _cmd_quickstart,
    ),
    *ANALYSIS_COMMANDS,  # gradcam, kernels, predict, export, profile (vidprior/analysis/commands.py)
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's sub-parser, from :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="vidprior",
        description="Image pre-training for 3D video networks: centre-slice initialisation and STS convolution.",
    )
    parser.add_argument("--version", action="version", version=f"vidprior {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {}
    for name, help_, add_arguments, run in COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        add_arguments(p)
        p.set_defaults(func=run)
        parsers[name] = p
    return parser, parsers


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line. A command with ``key=value`` overrides is parsed with the options and overrides in any
    order (``finetune --resume auto optim.lr=0.1 -c R``), which argparse's plain parsing refuses."""
    parser, parsers = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    if i is not None and argv[i] in parsers:
        sub = parsers[argv[i]]
        if any(a.dest == "overrides" for a in sub._actions):
            if argv[:i]:  # options of the top level only (--help, --version) come before the command
                return parser.parse_args(argv)
            args = sub.parse_intermixed_args(argv[i + 1 :])
            args.command = argv[i]
            return args
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not getattr(args, "func", None):
        build_parser()[0].print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except VidpriorError as e:
        print(f"vidprior {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vidprior {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
