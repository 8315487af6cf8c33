"""Models: the paper's backbones, the registry, image views and weight transfer.

Family modules register their builders on import; they are imported here explicitly, by name.
"""

from vidprior.models._registry import apply_sts, create_model, list_models, register_model
from vidprior.models.base import ClsHead, VideoClassifier, count_sts_layers
from vidprior.models.image_view import ImageSTSConv, image_model, is_image_view

# family modules: importing them registers their builders
from vidprior.models import r2plus1d, resnet3d, slowfast, tiny, x3d  # noqa: F401  isort: skip
from vidprior.models.inflate import (
    TransferReport,
    deflate_state_dict,
    deflate_weight,
    inflate_state_dict,
    inflate_weight,
    load_inflated,
)

__all__ = [
    "ClsHead",
    "ImageSTSConv",
    "TransferReport",
    "VideoClassifier",
    "apply_sts",
    "count_sts_layers",
    "create_model",
    "deflate_state_dict",
    "deflate_weight",
    "image_model",
    "inflate_state_dict",
    "inflate_weight",
    "is_image_view",
    "list_models",
    "load_inflated",
    "register_model",
]
