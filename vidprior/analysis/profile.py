"""Cost of a model at a clip geometry: parameters, multiply-adds, peak activation memory and measured throughput.

Parameters and multiply-adds come from :func:`vidprior.utils.complexity.profile`. Throughput is timed (after warm-up)
for inference (``no_grad``, eval mode) and for a training step (forward, cross-entropy, backward, SGD step), in
clips per second. Peak activation memory is the largest amount of memory held by tensors created during a training
forward (saved for backward) plus its backward: on CUDA from the allocator's peak statistics (less the parameter
gradients); on CPU by summing the distinct storages autograd saves for backward, parameters and buffers excluded
(a lower bound: temporaries freed during the forward are not counted).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from vidprior.errors import VidpriorError


@dataclass
class Variant:
    sts: bool
    channels_last: bool
    params: int
    macs: int
    activation_mb: float
    infer_clips_per_s: float
    train_clips_per_s: float


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in one training forward (CPU measure)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            s = t.untyped_storage()
            seen.setdefault(s.data_ptr(), s.nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some views on meta)
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    params = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    del out
    return sum(n for ptr, n in seen.items() if ptr not in params and ptr != x.untyped_storage().data_ptr())


def _activation_mb(model: nn.Module, x: torch.Tensor) -> float:
    model.train()
    if x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        model(x).float().sum().backward()
        torch.cuda.synchronize()
        grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
        peak = torch.cuda.max_memory_allocated(x.device) - base - grads  # the gradients are not activations
        model.zero_grad(set_to_none=True)
        return peak / 2**20
    return _saved_bytes(model, x) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, batch: int, device: torch.device, *, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return batch * iters / (time.perf_counter() - t0)


def measure(
    model: nn.Module,
    shape: tuple[int, int, int, int, int],
    *,
    sts: bool,
    channels_last: bool,
    device: torch.device,
    warmup: int = 1,
    iters: int = 3,
) -> Variant:
    """One variant of an already built model (STS or not is the caller's): ``shape`` = (B, 3, T, H, W)."""
    from vidprior.utils.complexity import profile

    p = profile(model, shape)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, max(1, _num_classes(model)), (shape[0],), device=device)
    act = _activation_mb(model, x)
    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(x)

    infer_rate = _rate(infer, shape[0], device, warmup=warmup, iters=iters)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x).float(), y).backward()
        opt.step()

    train_rate = _rate(step, shape[0], device, warmup=warmup, iters=iters)
    model.eval()
    return Variant(sts, channels_last, p.params, p.macs, round(act, 2), round(infer_rate, 3), round(train_rate, 3))


def _num_classes(model: nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 1


def profile_model(
    build,
    shape: tuple[int, int, int, int, int],
    *,
    sts_options: tuple[bool, ...] = (False, True),
    channels_last_options: tuple[bool, ...] = (False, True),
    device: str | torch.device = "cpu",
    warmup: int = 1,
    iters: int = 3,
) -> list[dict]:
    """Every combination of STS on/off and channels_last_3d on/off. ``build(sts: bool) -> nn.Module``."""
    if len(shape) != 5 or shape[1] != 3 or min(shape) < 1:
        raise VidpriorError(f"clip shape {shape}: expected (batch, 3, frames, height, width)")
    if iters < 1 or warmup < 0:
        raise VidpriorError(f"--iters {iters} / --warmup {warmup}: expected iters >= 1 and warmup >= 0")
    dev = torch.device(device)
    rows = []
    for sts in sts_options:
        for cl in channels_last_options:
            torch.manual_seed(0)
            model = build(sts)
            rows.append(
                asdict(measure(model, shape, sts=sts, channels_last=cl, device=dev, warmup=warmup, iters=iters))
            )
    return rows


def format_table(rows: list[dict], shape: tuple[int, ...]) -> str:
    head = (
        f"{'STS':<5} {'channels_last':<13} {'params (M)':>10} {'GMACs':>8} {'act. MB':>9} "
        f"{'infer clip/s':>12} {'train clip/s':>12}"
    )
    lines = [f"clip batch {tuple(shape)}", head]
    for r in rows:
        lines.append(
            f"{'yes' if r['sts'] else 'no':<5} {'yes' if r['channels_last'] else 'no':<13} {r['params'] / 1e6:>10.2f} "
            f"{r['macs'] / 1e9:>8.3f} {r['activation_mb']:>9.1f} {r['infer_clips_per_s']:>12.2f} "
            f"{r['train_clips_per_s']:>12.2f}"
        )
    return "\n".join(lines)
