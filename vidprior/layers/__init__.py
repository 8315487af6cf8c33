"""Layers: the STS convolution and model-wide conversion. Imports nothing from the rest of vidprior but errors."""

from vidprior.layers.convert import ConversionReport, from_sts, sts_eligibility, to_sts
from vidprior.layers.fuse import FusedSTSConv3d, fuse_sts
from vidprior.layers.sts import STSConv3d, parse_static_ratio, sts_support
from vidprior.layers.sts_modes import STATIC_MODE_SPECS, STATIC_MODES, StaticModeSpec

__all__ = [
    "STATIC_MODES",
    "STATIC_MODE_SPECS",
    "ConversionReport",
    "FusedSTSConv3d",
    "STSConv3d",
    "StaticModeSpec",
    "from_sts",
    "fuse_sts",
    "parse_static_ratio",
    "sts_eligibility",
    "sts_support",
    "to_sts",
]
