"""Errors a user can act on.

Every error raised for bad input derives from :class:`VidpriorError`; its message names the offending file, key
or value and says what to do. The command line prints such errors as one line (exit code 2) instead of a traceback.
"""

from __future__ import annotations


class VidpriorError(Exception):
    """Base class of user-facing errors (bad arguments, unsupported layers, mismatched weights)."""


class ConfigError(VidpriorError, ValueError):
    """A configuration value is unknown, mistyped or impossible (the message names the key and the value)."""


class ModelOptionError(VidpriorError, ValueError):
    """A model builder refused one of its options (the message names the model, the option and its value)."""


class PeerError(VidpriorError, RuntimeError):
    """Another process of a distributed run did not answer within the time-out, or its connection broke."""


class UnsupportedConvError(VidpriorError, ValueError):
    """A convolution cannot be expressed as an STS convolution (kernel, dilation, padding...)."""


class StsShapeError(VidpriorError, ValueError):
    """An input shape that an STS layer cannot process (for example odd sizes with ``layout="official"``)."""


class TransferError(VidpriorError, ValueError):
    """2D <-> 3D weight transfer failed: missing or unexpected keys, or shapes that cannot be mapped."""


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the choice closest to ``name``, or ``""``."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
