"""Video and image data: decoding, datasets, sampling, transforms, bad-file handling.

Depends on neither ``vidprior.models`` nor ``vidprior.engine``.
"""
