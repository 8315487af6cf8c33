"""Benchmarks of vidprior: `python -m benchmarks` (see __main__.py)."""
