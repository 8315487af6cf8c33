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
