"""Image pre-training step: the explicit 2D counterpart against the 3D model fed one-frame clips.

    .venv/bin/python benchmarks/image_view.py [--models slowonly50,csn50] [--batch 8] [--size 160]

Both start from the same weights and batch; a step is forward + cross-entropy + backward + SGD update. The 2D
counterpart (``vidprior.image_model``) skips the temporal taps that only ever multiply zero padding. Prints a Markdown
table of median step times and the 3D / 2D ratio, measured alternately in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import vidprior


def step_fn(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="slowonly50,csn50,slowfast50_4x16")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(
        f"# image pre-training step, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU float32, batch {args.batch}, {args.size}x{args.size}, "
        f"median of {args.repeats}\n"
    )
    print("| model | 3D on 1-frame clips ms | 2D counterpart ms | 3D / 2D |")
    print("| --- | ---: | ---: | ---: |")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model3d = vidprior.create_model(name, num_classes=1000)
        model2d = vidprior.image_model(model3d)
        x = torch.randn(args.batch, 3, args.size, args.size)
        y = torch.randint(0, 1000, (args.batch,))
        s3, s2 = step_fn(model3d, x.unsqueeze(2), y), step_fn(model2d, x, y)
        s3()
        s2()
        t3, t2 = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            s3()
            t3.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            s2()
            t2.append(time.perf_counter() - t0)
        ratio = statistics.median(a / b for a, b in zip(t3, t2))
        print(f"| {name} | {statistics.median(t3) * 1e3:.0f} | {statistics.median(t2) * 1e3:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
