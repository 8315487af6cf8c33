"""``fuse_sts``: swap a model's STS layers for their inference form (:mod:`vidprior.layers.sts_infer`)."""

from __future__ import annotations

from torch import Tensor, nn

from vidprior.errors import UnsupportedConvError
from vidprior.layers.sts import STSConv3d
from vidprior.layers.sts_infer import build_form, run_form


class FusedSTSConv3d(nn.Module):
    """Inference form of an :class:`STSConv3d` (built by :func:`fuse_sts`): plain convolutions on prepared kernels.

    Shares the STS layer's ``weight`` and ``bias`` Parameters (same state dict). The prepared kernels are taken
    when the module is built: after changing the weights, call :func:`fuse_sts` again on the unfused model.
    """

    def __init__(self, layer: STSConv3d) -> None:
        super().__init__()
        if not isinstance(layer, STSConv3d):
            raise UnsupportedConvError(f"FusedSTSConv3d needs an STSConv3d, got {type(layer).__name__}")
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups", "layout"):
            setattr(self, name, getattr(layer, name))
        for name in ("static_mode", "static_ratio", "static_dilation", "num_static", "static_groups", "_pad3"):
            setattr(self, name, getattr(layer, name))
        for name in ("num_horizontal", "horizontal_groups"):
            setattr(self, name, getattr(layer, name))
        self.weight = layer.weight
        self.bias = layer.bias
        self._sts = [layer]  # a list: not a registered submodule (the state dict keeps only weight and bias)
        self.form = build_form(layer)

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() == 4:  # unbatched (C, T, H, W)
            return self.forward(input.unsqueeze(0)).squeeze(0)
        self._sts[0]._check_input(input)
        return run_form(self, input, self.form)

    def _apply(self, fn, recurse=True):  # .to(device / dtype): move the prepared kernels with the weights
        super()._apply(fn, recurse)
        self.form = build_form(self._sts[0])
        return self

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, static={self.num_static}, static_mode={self.static_mode!r}"

    def unfuse(self) -> STSConv3d:
        """The training-form layer (sharing the Parameters)."""
        return self._sts[0]


def fuse_sts(model: nn.Module) -> nn.Module:
    """Swap every :class:`STSConv3d` of ``model`` (in place) for its inference form; returns ``model``.

    The result equals the training form within float rounding (tests: 1e-5), uses only ``conv3d``, additions and
    ``cat`` (exportable to ONNX), and keeps the state dict. A bare ``STSConv3d`` returns a new
    :class:`FusedSTSConv3d`. The model is put in ``eval()`` mode: the fused form is for inference.
    """
    if isinstance(model, STSConv3d):
        return FusedSTSConv3d(model).eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, STSConv3d):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, FusedSTSConv3d(module))
    return model.eval()
