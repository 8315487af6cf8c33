"""The ``vidprior`` command line (also ``python -m vidprior``).

Each sub-command is a small function taking the parsed arguments; errors derived from
:class:`vidprior.errors.VidpriorError` are printed as one line and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from vidprior import __version__
from vidprior.errors import VidpriorError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidprior",
        description="Image pre-training for 3D video networks: centre-slice initialisation and STS convolution.",
    )
    parser.add_argument("--version", action="version", version=f"vidprior {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    env = sub.add_parser("env", help="print versions of Python, PyTorch, decoders and the accelerator")
    env.add_argument("--json", action="store_true", help="print as JSON")
    env.set_defaults(func=_cmd_env)

    models = sub.add_parser("models", help="list the registered models with parameters, multiply-adds and STS layers")
    models.add_argument("pattern", nargs="?", default="*", help="glob on the model name, e.g. 'slow*'")
    models.add_argument("--crop", type=int, default=256, help="spatial size for the multiply-add count (256)")
    models.add_argument("--num-classes", type=int, default=400)
    models.add_argument("--json", action="store_true", help="print as JSON")
    models.set_defaults(func=_cmd_models)

    data = sub.add_parser("data", help="check and prepare video data")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    check = data_sub.add_parser(
        "check", help="probe every video (opens, counts frames, size, duration) and write a manifest of bad files"
    )
    check.add_argument("target", help="a video list ('path label' lines) or a folder of videos")
    check.add_argument("--root", help="directory the list's paths are relative to")
    check.add_argument("--out", help="manifest path (default: next to the list, or <folder>/manifest.jsonl)")
    check.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    check.add_argument("--backend", default="pyav", choices=["pyav", "torchcodec", "decord"])
    check.add_argument("--min-frames", type=int, default=1, help="fewer frames count as too_short")
    check.set_defaults(func=_cmd_data_check)
    reenc = data_sub.add_parser(
        "reencode", help="rewrite videos to a short side (320) and keyframe interval; safe to interrupt and re-run"
    )
    reenc.add_argument("src", help="folder of source videos")
    reenc.add_argument("dst", help="output folder (mirrors the source tree)")
    reenc.add_argument("--short-side", type=int, default=320)
    reenc.add_argument("--gop", type=int, default=None, help="keyframe interval (e.g. 16 for fast seeking)")
    reenc.add_argument("--workers", type=int, default=None)
    reenc.set_defaults(func=_cmd_data_reencode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
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
