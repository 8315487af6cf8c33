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
