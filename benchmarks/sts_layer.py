"""STSConv3d against nn.Conv3d with the same weights, on the layer shapes the paper's models use.

    .venv/bin/python benchmarks/sts_layer.py                 # CPU, float32, batch 8 (the issue's setting)
    .venv/bin/python benchmarks/sts_layer.py --device cuda --dtype bfloat16 --batch 16

Prints a Markdown table: median forward and forward+backward times of both layers, measured alternately in the
same run, and their ratio (STS / Conv3d). Goal on CPU: every forward+backward ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from vidprior import STSConv3d
from vidprior.utils.env import environment


@dataclass(frozen=True)
class Case:
    name: str
    c_in: int
    c_out: int
    kernel: tuple[int, int, int]
    size: tuple[int, int, int]  # input (T, H, W)
    stride: int = 1
    groups: int = 1


# Layer shapes of the paper's models (docs/model_zoo.md; 224 crop, X3D-S at 160).
CASES = [
    Case("SlowOnly res4 conv1 3x1x1", 1024, 256, (3, 1, 1), (8, 14, 14)),
    Case("SlowOnly res5 conv1 3x1x1", 2048, 512, (3, 1, 1), (8, 7, 7)),
    Case("CSN res3 dw 3x3x3", 128, 128, (3, 3, 3), (8, 28, 28), groups=128),
    Case("CSN res3 dw 3x3x3 s2", 128, 128, (3, 3, 3), (8, 56, 56), stride=2, groups=128),
    Case("CSN res4 dw 3x3x3", 256, 256, (3, 3, 3), (8, 14, 14), groups=256),
    Case("CSN res4 dw 3x3x3 s2", 256, 256, (3, 3, 3), (8, 28, 28), stride=2, groups=256),
    Case("X3D-S res2 dw 3x3x3", 54, 54, (3, 3, 3), (13, 40, 40), groups=54),
    Case("X3D-S res3 dw 3x3x3", 108, 108, (3, 3, 3), (13, 20, 20), groups=108),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench_case(
    case: Case, *, batch: int, repeats: int, warmup: int, device, dtype, layout: str, channels_last: bool,
    eval_mode: bool = False,
):  # fmt: skip
    pad = (1, case.kernel[1] // 2, case.kernel[2] // 2)
    stride = (1, case.stride, case.stride)
    conv = nn.Conv3d(case.c_in, case.c_out, case.kernel, stride, pad, groups=case.groups, bias=False)
    conv = conv.to(device=device, dtype=dtype)
    sts = STSConv3d.from_conv3d(conv, layout=layout)  # same Parameters
    if eval_mode:  # the forward timings then use the STS layer's inference form (the backward ones cannot)
        conv.eval()
        sts.eval()
    x = torch.randn(batch, case.c_in, *case.size, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    xg = x.detach().clone().requires_grad_(True)
    go = torch.randn_like(conv(x))  # never time on zeros

    def fwd(m):
        with torch.no_grad():
            m(x)

    def fwd_bwd(m):
        xg.grad = None
        conv.weight.grad = None
        m(xg).backward(go)

    results = {}
    for label, step in (("fwd", fwd), ("fwdbwd", fwd_bwd)):
        for _ in range(warmup):
            step(conv)
            step(sts)
        t_conv, t_sts = [], []
        for _ in range(repeats):  # alternate, so that machine noise hits both alike
            t_conv.append(_time(partial(step, conv), device))
            t_sts.append(_time(partial(step, sts), device))
        ratios = [s / c for s, c in zip(t_sts, t_conv)]
        results[label] = (statistics.median(t_conv), statistics.median(t_sts), statistics.median(ratios))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--layout", default="zero_pad", choices=["zero_pad", "official"])
    p.add_argument("--channels-last", action="store_true", help="feed channels_last_3d inputs to both layers")
    p.add_argument("--only", default="", help="run only cases whose name contains this text")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    env = environment()
    print(
        f"# STSConv3d vs nn.Conv3d -- {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{env['cpu_count']} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"device {args.device}{' ' + env.get('gpu', '') if device.type == 'cuda' else ''}, {args.dtype}, "
        f"batch {args.batch}, layout {args.layout}{', channels_last_3d' if args.channels_last else ''}, "
        f"median of {args.repeats}\n"
    )
    print(
        "| layer | input (C,T,H,W) | Conv3d fwd ms | STS fwd ms | fwd ratio | Conv3d f+b ms | STS f+b ms | f+b ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for case in CASES:
        if args.only and args.only not in case.name:
            continue
        r = bench_case(
            case,
            batch=args.batch,
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
            dtype=dtype,
            layout=args.layout,
            channels_last=args.channels_last,
        )
        (fc, fs, fr), (bc, bs, br) = r["fwd"], r["fwdbwd"]
        shape = f"{case.c_in},{','.join(map(str, case.size))}"
        print(
            f"| {case.name} | {shape} | {fc * 1e3:.1f} | {fs * 1e3:.1f} | {fr:.2f} | "
            f"{bc * 1e3:.1f} | {bs * 1e3:.1f} | {br:.2f} |",
            flush=True,
        )
        rows.append({"case": case.name, "fwd": r["fwd"], "fwd_bwd": r["fwdbwd"]})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "env": env, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
