"""Channels-last for models whose weights mix 4-D and 5-D tensors (the image view of an STS model)."""

import torch

from vidprior import create_model, image_model
from vidprior.utils.memory_format import to_channels_last


def test_image_view_of_sts_model_goes_channels_last():
    m = image_model(create_model("csn_tiny", num_classes=3, sts="all"))
    to_channels_last(m)
    dims = {p.dim() for p in m.parameters()}
    assert 5 in dims and 4 in dims
    for p in m.parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
        if p.dim() == 5:
            assert p.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    ref = image_model(create_model("csn_tiny", num_classes=3, sts="all"))
    ref.load_state_dict(m.state_dict())
    ref.eval()
    torch.testing.assert_close(m(x.contiguous(memory_format=torch.channels_last)), ref(x), atol=1e-5, rtol=1e-4)
