"""Models and weight transfer. (The model zoo arrives with issue 3.)"""

from vidprior.models.inflate import (
    TransferReport,
    deflate_state_dict,
    deflate_weight,
    inflate_state_dict,
    inflate_weight,
    load_inflated,
)

__all__ = [
    "TransferReport",
    "deflate_state_dict",
    "deflate_weight",
    "inflate_state_dict",
    "inflate_weight",
    "load_inflated",
]
