"""Layers: the STS convolution and model-wide conversion. Imports nothing from the rest of vidprior but errors."""

from vidprior.layers.convert import ConversionReport, from_sts, sts_eligibility, to_sts
from vidprior.layers.sts import STSConv3d, parse_static_ratio, sts_support

__all__ = [
    "ConversionReport",
    "STSConv3d",
    "from_sts",
    "parse_static_ratio",
    "sts_eligibility",
    "sts_support",
    "to_sts",
]
