"""torch.compile with STS: one graph per model (no break per STS layer), outputs and gradients equal to eager.

The tests trace with ``backend="aot_eager"``: Dynamo captures the forward with ``fullgraph=True`` (a graph break
raises) and AOTAutograd traces the backward, exactly as with the default Inductor backend, without compiling C++
(minutes on a busy 2-core machine). ``python -m benchmarks --only compile`` measures Inductor's compile time and speed.
"""

from __future__ import annotations

import pytest
import torch

import vidprior
from vidprior import STSConv3d


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.slow
# the dense (3, 1, 1) shifted-sum path on NCDHW and the depthwise frames path on channels_last_3d
@pytest.mark.parametrize("name,channels_last", [("slowonly_tiny", False), ("x3d_tiny", True)])
def test_compiled_sts_model_equals_eager(name, channels_last):
    torch._dynamo.reset()
    model = vidprior.create_model(name, num_classes=3, sts=True).double()
    assert any(isinstance(m, STSConv3d) for m in model.modules())
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # train mode: the same output from both runs
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    ref = model(x)
    ref.square().sum().backward()
    g_ref = _grads(model)
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # a graph break raises here
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref)
    g = _grads(model)
    assert len(g) == len(g_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)
    model.eval()
    with torch.no_grad():  # eval: the compiled model traces the training form (the cached form is skipped)
        torch.testing.assert_close(compiled(x), model(x))
