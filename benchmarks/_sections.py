"""The sections of ``python -m benchmarks``; each returns (Markdown text, [(goal, met / not met, why)])."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import vidprior
from benchmarks._core import (
    Setting,
    build,
    clip,
    infer_step,
    interleaved,
    paired_ratio,
    peak_rss_mib,
    train_step,
)
from benchmarks.sts_layer import CASES, Case, bench_case

FULL_MODELS = ["slowonly50", "csn50", "x3d_s", "slowfast50_8x8", "slowfast50_4x16", "r2plus1d18"]
SMALL_MODELS = ["slowonly_tiny", "x3d_tiny"]


@dataclass
class Context:
    small: bool
    setting: Setting
    models: list[str]

    @classmethod
    def make(cls, *, small: bool, repeats: int | None, models: str | None) -> Context:
        if small:
            s = Setting(batch=2, size=32, repeats=repeats or 2, warmup=1)
        else:
            s = Setting(batch=2, size=112, repeats=repeats or 5, warmup=1)
        names = models.split(",") if models else (SMALL_MODELS if small else FULL_MODELS)
        return cls(small, s, names)


def _status(ok: bool) -> str:
    return "met" if ok else "**not met**"


def layer(ctx: Context):
    cases = [
        Case("tiny dense 3x1x1", 16, 8, (3, 1, 1), (4, 6, 6)),
        Case("tiny dw 3x3x3", 8, 8, (3, 3, 3), (4, 8, 8), groups=8),
    ]
    cases = cases if ctx.small else CASES
    batch = 1 if ctx.small else 4
    rows = ["| layer | layout | fwd (eval, fused) STS / Conv3d | fwd+bwd STS / Conv3d |", "| --- | --- | ---: | ---: |"]
    for case in cases:
        for cl in (False, True):
            r = bench_case(case, batch=batch, repeats=ctx.setting.repeats, warmup=1, device=torch.device("cpu"),
                           dtype=torch.float32, layout="zero_pad", channels_last=cl, eval_mode=True)  # fmt: skip
            rows.append(f"| {case.name} | {'CL' if cl else 'NCDHW'} | {r['fwd'][2]:.2f} | {r['fwdbwd'][2]:.2f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    text = f"STSConv3d vs nn.Conv3d with the same weights, batch {batch}, medians of per-round ratios.\n\n"
    return text + "\n".join(rows), []


def models(ctx: Context):
    s = ctx.setting
    rows = [
        "| model | input | train STS/plain | infer STS/plain | train CL/NCDHW (plain) | infer CL/NCDHW (plain) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    goals = []
    worst_inf, worst_train, cl_wins = [], [], []
    for name in ctx.models:
        r: dict[str, float] = {}
        for mode in ("train", "infer"):
            fns = {}
            for sts in (False, True):
                for cl in (False, True):
                    m = build(name, sts=sts, channels_last=cl)
                    x = clip(name, s, channels_last=cl)
                    fns[(sts, cl)] = train_step(m, x, 400) if mode == "train" else infer_step(m, x)
            t = interleaved(fns, repeats=s.repeats, warmup=s.warmup)  # seconds per step
            for cl in (False, True):
                r[f"{mode}_sts_{cl}"] = t[(False, cl)] / t[(True, cl)]  # throughput with STS / without
            r[f"{mode}_cl"] = t[(False, False)] / t[(False, True)]  # throughput CL / NCDHW
        for cl in (False, True):
            worst_inf.append((r[f"infer_sts_{cl}"], f"{name} {'CL' if cl else 'NCDHW'}"))
            worst_train.append((r[f"train_sts_{cl}"], f"{name} {'CL' if cl else 'NCDHW'}"))
        cl_wins.append((name, r["train_cl"], r["infer_cl"]))
        for cl in (False, True):
            rows.append(
                f"| {name} | {'CL' if cl else 'NCDHW'} | {r[f'train_sts_{cl}']:.2f} | {r[f'infer_sts_{cl}']:.2f} | "
                f"{r['train_cl']:.2f} | {r['infer_cl']:.2f} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    text = (
        f"Throughput ratios (higher = the first is faster), batch {s.batch}, {s.size}x{s.size}, frames per "
        f"backbone's setting, {s.repeats} interleaved rounds. Training step = forward, cross-entropy, backward, SGD "
        "step. Inference = eval() under inference_mode (STS layers use their cached inference form).\n\n"
    )
    lo_inf, lo_train = min(worst_inf), min(worst_train)
    goals.append(
        ("1. STS inference throughput >= 0.95x", _status(lo_inf[0] >= 0.95), f"worst {lo_inf[0]:.2f} ({lo_inf[1]})")
    )
    goals.append(
        ("2. STS training <= 3% slower", _status(lo_train[0] >= 0.97), f"worst {lo_train[0]:.2f} ({lo_train[1]})")
    )
    wins = ", ".join(f"{n} {tr:.2f}/{inf:.2f}" for n, tr, inf in cl_wins)
    goals.append(
        (
            "4. channels_last_3d where it wins",
            "measured (engine default not changed here)",
            f"CL/NCDHW train/infer: {wins}",
        )
    )
    return text + "\n".join(rows), goals


def compile(ctx: Context):
    name = ctx.models[0]
    s = ctx.setting
    rows = [
        "| model | STS | compile s (first fwd+bwd) | train eager/compiled | infer eager/compiled |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    times = {}
    backend = "aot_eager" if ctx.small else "inductor"  # small mode: tracing only, no C++ build
    for sts in (False, True):
        torch._dynamo.reset()
        m = build(name, sts=sts, channels_last=False)
        x = clip(name, s)
        step = train_step(m, x, 400)
        t0 = time.perf_counter()
        cm = torch.compile(m, backend=backend)
        cstep = train_step(cm, x, 400)
        cstep()
        times[sts] = time.perf_counter() - t0
        tr = paired_ratio({"c": cstep, "e": step}, "e", "c", repeats=s.repeats, warmup=1)
        inf = paired_ratio({"c": infer_step(cm, x), "e": infer_step(m, x)}, "e", "c", repeats=s.repeats, warmup=1)
        rows.append(f"| {name} | {sts} | {times[sts]:.0f} | {tr:.2f} | {inf:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    ratio = times[True] / times[False]
    goal = (
        "3. torch.compile with STS within 2x compile time",
        _status(ratio <= 2.0),
        f"{name}: {ratio:.2f}x ({times[True]:.0f} s vs {times[False]:.0f} s); "
        "outputs/grads equal and one graph: tests/test_compile.py",
    )
    return f"Backend {backend}; first call = compile + one step.\n\n" + "\n".join(rows), [goal]


def memory(ctx: Context):
    s = ctx.setting
    rows = ["| model | peak RSS plain MiB | peak RSS STS MiB | STS / plain |", "| --- | ---: | ---: | ---: |"]
    for name in ctx.models[: 1 if ctx.small else 2]:
        a = peak_rss_mib(name, sts=False, batch=s.batch, size=s.size)
        b = peak_rss_mib(name, sts=True, batch=s.batch, size=s.size)
        rows.append(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.3f} |")
    return "Fresh process each, two training steps, resident set size (includes the interpreter).\n\n" + "\n".join(
        rows
    ), []


def _count(model: nn.Module, shape) -> tuple[int, int]:
    prof = vidprior.profile(model, shape, count_norm=False)
    return prof.params, prof.macs_by_op.get("conv", 0) + prof.macs_by_op.get("linear", 0)


def reference(ctx: Context):
    """vidprior vs torchvision / PyTorchVideo. PyTorchVideo's hub builders fix the head's pooling to their own input
    size (slow_r50: 8x224x224, x3d_s: 13x160x160), so those pairs run at that size, batch 1."""
    s = ctx.setting
    rows = [
        "| vidprior | reference | input | params | train vidprior/ref | infer vidprior/ref |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    notes = []
    pairs = []
    if ctx.small:
        notes.append("Small mode: no full-size reference models are built.")
    else:
        import torchvision

        tv = lambda: torchvision.models.video.r2plus1d_18(num_classes=400)
        pairs.append(("r2plus1d18", "torchvision r2plus1d_18", tv, (s.batch, 3, 8, s.size, s.size)))
    if importlib.util.find_spec("pytorchvideo") is None:
        notes.append("PyTorchVideo comparison skipped: `pytorchvideo` is not importable (run `benchmarks/setup.sh`).")
    elif not ctx.small:
        from pytorchvideo.models import hub

        pairs.append(
            ("slowonly50", "PyTorchVideo slow_r50", lambda: hub.slow_r50(pretrained=False), (1, 3, 8, 224, 224))
        )
        pairs.append(("x3d_s", "PyTorchVideo x3d_s", lambda: hub.x3d_s(pretrained=False), (1, 3, 13, 160, 160)))
    for name, ref_name, make, shape in pairs:
        torch.manual_seed(0)
        ours, ref = vidprior.create_model(name, num_classes=400), make()
        (po, mo), (pr, mr) = _count(ours, shape), _count(ref, shape)
        if (po, mo) != (pr, mr):  # equal parameters and multiply-adds, or no timing
            notes.append(f"{name} vs {ref_name}: params {po} vs {pr}, MACs {mo} vs {mr} differ; not timed.")
            continue
        x = torch.randn(*shape)
        tr = paired_ratio(
            {"a": train_step(ours, x, 400), "b": train_step(ref, x, 400)}, "b", "a", repeats=s.repeats, warmup=1
        )
        inf = paired_ratio({"a": infer_step(ours, x), "b": infer_step(ref, x)}, "b", "a", repeats=s.repeats, warmup=1)
        rows.append(f"| {name} | {ref_name} | {'x'.join(map(str, shape))} | {po} | {tr:.2f} | {inf:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    text = "Throughput ratios vidprior / reference (higher = vidprior faster); equal params and MACs asserted.\n\n"
    return text + "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes), []


def decode(ctx: Context):
    if ctx.small:
        return "Skipped in small mode: writing the synthetic H.264 videos takes minutes.", []
    script = Path(__file__).with_name("decode.py")
    args = ["--videos", "2", "--clips", "8", "--views", "2", "--repeats", "3"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return f"decode.py failed (exit {out.returncode}):\n\n```\n{out.stderr[-2000:]}\n```", []
    return f"`python benchmarks/decode.py {' '.join(args)}`:\n\n{out.stdout}", []
