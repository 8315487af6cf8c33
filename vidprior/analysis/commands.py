"""The analysis commands of the ``vidprior`` CLI: ``gradcam``, ``kernels``, ``predict``, ``export``, ``profile``.

``COMMANDS`` lists ``(name, help, add_arguments(parser), run(args) -> exit status)``; :mod:`vidprior.cli` registers
each. Errors are :class:`~vidprior.errors.VidpriorError` (one line, exit status 2, printed by the CLI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vidprior.analysis.source import add_source_arguments, add_view_arguments, apply_view_arguments, source_from_args
from vidprior.errors import VidpriorError


# ------------------------------------------------------------------------------------------------ gradcam
def _gradcam_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file PyAV can read")
    add_source_arguments(p, positional=False)
    p.add_argument("--class", dest="target", type=int, default=None, help="class to explain (default: predicted)")
    p.add_argument(
        "--layer",
        action="append",
        default=None,
        help="module name, e.g. backbone.layer3; repeatable (default: last stage)",
    )
    p.add_argument("--tap", type=int, choices=[-1, 0, 1], default=None, help="slice network t1/t2/t3 (paper Fig. 1)")
    p.add_argument("--out", default="gradcam", help="output folder (default ./gradcam)")
    add_view_arguments(p)


def _gradcam_run(args: argparse.Namespace) -> int:
    from vidprior.analysis.gradcam import display_frames, gradcam, save_outputs
    from vidprior.analysis.predict import load_views

    src = apply_view_arguments(source_from_args(args), args)
    clip = load_views(args.video, geometry=src.geometry, crop_size=src.crop_size, short_side=src.short_side)[0]
    result = gradcam(src.model, clip, target=args.target, layer=args.layer, tap=args.tap)
    names = src.class_names
    label = names[result.target] if names and result.target < len(names) else str(result.target)
    what = f"slice network tap {args.tap:+d}" if args.tap is not None else src.name
    files = save_outputs(
        display_frames(clip), result, args.out, title=f"{what}, class {label}, layer {', '.join(result.layers)}"
    )
    meta = {
        "video": args.video,
        "model": src.name,
        "class": result.target,
        "class_name": label,
        "predicted": result.predicted,
        "layers": result.layers,
        "tap": args.tap,
        **files,
    }
    (Path(args.out) / "gradcam.json").write_text(json.dumps(meta, indent=2))
    print(
        f"Grad-CAM of class {label} ({what}, layer {', '.join(result.layers)}) -> {files['grid']}, "
        f"{files['animation']}, {files['maps']}"
    )
    return 0


# ------------------------------------------------------------------------------------------------ kernels
def _kernels_args(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--out", default="kernels", help="output folder for kernels.json and kernels.png")


def _kernels_run(args: argparse.Namespace) -> int:
    from vidprior.analysis.kernels import heatmap, kernel_energy, summary, to_json

    src = source_from_args(args)
    rows = kernel_energy(src.model)
    out = Path(args.out)
    j = to_json(rows, out / "kernels.json", source=args.source, model=src.name, origin=src.origin)
    png = heatmap(rows, out / "kernels.png", title=f"{src.name}: temporal-slice energy")
    print(summary(rows))
    print(f"{len(rows)} layers -> {j}, {png}")
    return 0


# ------------------------------------------------------------------------------------------------ predict
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, folders of videos, or list files (.txt)")
    add_source_arguments(p, positional=False)
    p.add_argument("--classes", help="class-name file (one per line) when the run does not name its classes")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, default=None, help="clips per video (default: the model's test views)")
    p.add_argument("--crops", type=int, choices=[1, 3], default=None, help="crops per clip (default: test views)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    add_view_arguments(p)


LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given; folders -> their videos (recursive); list files -> the first field of each line."""
    from vidprior.data.lists import scan_videos

    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += [r.path for r in scan_videos(p)]
        elif p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#") and line.split(",")[0] != "path":
                    first = line.split(",")[0].split()[0]
                    paths.append(first if Path(first).is_absolute() else str(p.parent / first))
        else:
            paths.append(item)  # a missing or unreadable file is reported with its reason when read
    return paths


def _predict_run(args: argparse.Namespace) -> int:
    import torch

    from vidprior.analysis.predict import format_table, predict

    src = apply_view_arguments(source_from_args(args), args)
    if args.classes:
        from vidprior.data.lists import read_class_names

        src.class_names = read_class_names(args.classes)
    paths = expand_inputs(args.videos)
    if not paths:
        raise VidpriorError(f"no videos found in {args.videos}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    preds = predict(
        paths,
        src,
        topk=args.topk,
        batch_size=args.batch_size,
        clips=args.clips,
        crops=args.crops,
        device=device,
        progress=len(paths) > 1 and not args.json and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps([p.as_dict() for p in preds], indent=2))
    else:
        print(format_table(preds))
    bad = sum(not p.ok for p in preds)
    if bad:
        print(f"{bad} of {len(preds)} files could not be read", file=sys.stderr)
    return 1 if bad else 0


# ------------------------------------------------------------------------------------------------ export
def _export_args(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--out", default="export", help="output folder (default ./export)")
    p.add_argument("--format", nargs="+", choices=["pt2", "onnx"], default=["pt2", "onnx"])
    p.add_argument("--frames", type=int, default=None, help="clip length (default: the model's clip)")
    p.add_argument("--size", type=int, default=224, help="frame height and width (224)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest difference from PyTorch accepted (1e-4)")


def _export_run(args: argparse.Namespace) -> int:
    from vidprior.analysis.export import export_model

    src = source_from_args(args)
    frames = args.frames or src.frames
    report = export_model(
        src.model, (frames, args.size, args.size), args.out, formats=tuple(args.format), atol=args.atol
    )
    for fmt, path in report.files.items():
        diffs = ", ".join(
            f"batch {k.split('@')[1]}: {v:.2g}" for k, v in report.max_abs_diff.items() if k.startswith(fmt + "@")
        )
        print(f"{fmt:<5} {path}  (max |diff| vs PyTorch: {diffs or 'not checked'})")
    for fmt, why in report.skipped.items():
        print(f"{fmt}: {why}")
    (Path(args.out) / "export.json").write_text(
        json.dumps(
            {
                "source": args.source,
                "model": src.name,
                "clip": [3, frames, args.size, args.size],
                "batch": "dynamic",
                "files": report.files,
                "max_abs_diff": report.max_abs_diff,
                "skipped": report.skipped,
            },
            indent=2,
        )
    )
    return 0


# ------------------------------------------------------------------------------------------------ profile
def _profile_args(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=None, help="clip length (default: the model's clip)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", action="store_true")


def _profile_run(args: argparse.Namespace) -> int:
    import copy

    import torch

    from vidprior.analysis.profile import format_table, profile_model
    from vidprior.layers.convert import from_sts
    from vidprior.models import apply_sts

    args_sts, args.sts = args.sts, "none" if args.sts is None else args.sts
    src = source_from_args(args)
    base = src.model
    has_placement = bool(getattr(base, "sts_layers", None))

    def build(sts: bool):
        m = copy.deepcopy(base)
        if sts and args_sts != "all":
            apply_sts(m, True)
        elif not sts:
            from_sts(m)
        return m

    options = (False, True) if has_placement else (False,)
    if args_sts == "all":
        options = (True,)
    frames = args.frames or src.frames
    shape = (args.batch, 3, frames, args.size, args.size)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = profile_model(build, shape, sts_options=options, device=device, warmup=args.warmup, iters=args.iters)
    if args.json:
        print(json.dumps({"model": src.name, "shape": list(shape), "device": device, "variants": rows}, indent=2))
    else:
        print(f"{src.name} on {device}")
        print(format_table(rows, shape))
    return 0


COMMANDS = [
    (
        "gradcam",
        "Grad-CAM heat maps per frame for a video (also for the t1/t2/t3 slice networks)",
        _gradcam_args,
        _gradcam_run,
    ),
    (
        "kernels",
        "energy share of each temporal slice of the 3D kernels, per layer (JSON + heat map)",
        _kernels_args,
        _kernels_run,
    ),
    ("predict", "top-k classes for video files with the model's test views", _predict_args, _predict_run),
    (
        "export",
        "export to torch.export (.pt2) and ONNX with a dynamic batch, checked against PyTorch",
        _export_args,
        _export_run,
    ),
    (
        "profile",
        "parameters, multiply-adds, activation memory and throughput, with/without STS and channels_last",
        _profile_args,
        _profile_run,
    ),
]
