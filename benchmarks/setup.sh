#!/usr/bin/env bash
# The benchmark's own environment: PyTorchVideo 0.1.5 for the reference comparisons, never in the runtime pins.
#
#   benchmarks/setup.sh                 # makes benchmarks/.venv on top of the project's venv (system site packages)
#   benchmarks/setup.sh --target DIR    # installs into DIR instead; then PYTHONPATH=DIR python -m benchmarks
#
# PyTorchVideo 0.1.5 is installed with --no-deps (its pins would replace torch); its pure-Python dependencies are
# listed here. decord and torchcodec (decoder comparisons) are optional: installed when the index has a wheel.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
base_python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$base_python" ] || base_python="$(command -v python3)"
deps=(fvcore iopath parameterized yacs tabulate termcolor portalocker)  # pure Python; torch, numpy, av come from the project
if [ "${1:-}" = "--target" ]; then
  target="$2"
  "$base_python" -m pip install --no-deps --target "$target" "pytorchvideo==0.1.5"
  "$base_python" -m pip install --no-deps --target "$target" "${deps[@]}"
else
  "$base_python" -m venv --system-site-packages "$here/.venv"
  "$here/.venv/bin/python" -m pip install --no-deps "pytorchvideo==0.1.5"
  "$here/.venv/bin/python" -m pip install --no-deps "${deps[@]}"
  "$here/.venv/bin/python" -m pip install decord || echo "decord: no wheel for this platform; skipped"
  "$here/.venv/bin/python" -m pip install torchcodec || echo "torchcodec: not installable here; skipped"
  echo "run: $here/.venv/bin/python -m benchmarks"
fi
