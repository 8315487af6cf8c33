"""Export a model for deployment: ``torch.export`` (a ``.pt2`` program) and ONNX, both with a dynamic batch size,
each checked against the PyTorch model on the spot (``onnxruntime`` for the ONNX file).

STS layers are exported in their inference form (:func:`vidprior.fuse_sts`): STS is linear and fixed at inference,
so each STS conv becomes plain convolutions over prepared kernels (the same parameters, the same result), not the
shifted-sum autograd function of the training path, which the ONNX translation handles very slowly.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vidprior.errors import VidpriorError
from vidprior.layers.fuse import fuse_sts


def inference_form(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every STS conv in its inference form (:func:`vidprior.fuse_sts`:
    plain ``conv3d``, additions and ``cat``; the same outputs within float rounding)."""
    return fuse_sts(copy.deepcopy(model))


@dataclass
class ExportReport:
    files: dict[str, str] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # "pt2@B" / "onnx@B" -> max |exported - PyTorch|
    skipped: dict[str, str] = field(default_factory=dict)


def _check(name: str, got: torch.Tensor, ref: torch.Tensor, atol: float, report: ExportReport, batch: int) -> None:
    diff = float((got.float() - ref.float()).abs().max())
    report.max_abs_diff[f"{name}@{batch}"] = diff
    if not diff <= atol:
        raise VidpriorError(
            f"the {name} export differs from PyTorch by {diff:.3g} (> {atol:g}) at batch {batch}; the file is "
            f"kept for inspection in {report.files.get(name)}"
        )


def export_model(
    model: nn.Module,
    clip: tuple[int, int, int],
    out: str | Path,
    *,
    formats: tuple[str, ...] = ("pt2", "onnx"),
    check_batches: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    max_batch: int = 1024,
    stem: str = "model",
) -> ExportReport:
    """Export ``model`` for clips ``(3, T, H, W)`` = ``(3, *clip)`` with a dynamic batch dimension.

    Writes ``<out>/<stem>.pt2`` and/or ``<out>/<stem>.onnx`` and checks each against the PyTorch model on random
    clips at each of ``check_batches``; raises :class:`VidpriorError` if any output differs by more than ``atol``.
    """
    unknown = set(formats) - {"pt2", "onnx"}
    if unknown or not formats:
        raise VidpriorError(f"--format {sorted(unknown) or formats}: expected pt2 and/or onnx")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = inference_form(model)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn((2, 3, *clip), generator=gen)
    inputs = {b: torch.randn((b, 3, *clip), generator=gen) for b in check_batches}
    with torch.no_grad():
        refs = {b: model.eval()(x) for b, x in inputs.items()}
    report = ExportReport()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    except Exception as e:  # torch.export raises many types; say which model and why in one line
        raise VidpriorError(f"torch.export failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    if "pt2" in formats:
        path = out / f"{stem}.pt2"
        torch.export.save(program, path)
        report.files["pt2"] = str(path)
        loaded = torch.export.load(path).module()
        with torch.no_grad():
            for b, x in inputs.items():
                _check("pt2", loaded(x), refs[b], atol, report, b)
    if "onnx" in formats:
        path = out / f"{stem}.onnx"
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            program, (example,), path, dynamo=True, input_names=["clips"], output_names=["logits"], verbose=False
        )
        report.files["onnx"] = str(path)
        try:
            import onnxruntime as ort
        except ImportError:
            report.skipped["onnx"] = "onnxruntime is not installed: the ONNX file was written but not checked"
            return report
        for b, x in inputs.items():
            try:
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
            except Exception as e:  # onnxruntime raises its own exception types
                raise VidpriorError(
                    f"{path}: onnxruntime cannot run the exported model at batch {b}: {str(e).splitlines()[0][:300]}"
                ) from None
            _check("onnx", got, refs[b], atol, report, b)
    return report
