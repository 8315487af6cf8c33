"""vidprior: image pre-training for 3D video networks.

Implements "In Defense of Image Pre-Training for Spatiotemporal Recognition" (ECCV 2022): pre-train a 3D
network's 2D counterpart on images, load the weights into the centre temporal slice of the 3D kernels, and
fine-tune on video with the Spatial-Temporal Separable (STS) convolution.
"""

from vidprior.errors import VidpriorError
from vidprior.layers import ConversionReport, STSConv3d, from_sts, fuse_sts, to_sts
from vidprior.models import create_model, image_model, list_models
from vidprior.models.inflate import (
    TransferReport,
    deflate_state_dict,
    deflate_weight,
    inflate_state_dict,
    inflate_weight,
    load_inflated,
)
from vidprior.utils.complexity import Profile, count_params, profile

__version__ = "0.1.0"

__all__ = [
    "ConversionReport",
    "Profile",
    "STSConv3d",
    "TransferReport",
    "VidpriorError",
    "__version__",
    "count_params",
    "create_model",
    "deflate_state_dict",
    "deflate_weight",
    "from_sts",
    "fuse_sts",
    "image_model",
    "inflate_state_dict",
    "inflate_weight",
    "list_models",
    "load_inflated",
    "profile",
    "to_sts",
]
