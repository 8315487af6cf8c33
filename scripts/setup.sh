#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv inside the repository from the exact pins.
#   bash scripts/setup.sh          runtime dependencies (requirements.txt)
#   bash scripts/setup.sh --dev    plus test and lint tools (requirements-dev.txt)
# Re-running is cheap: the install is skipped when the requirements files have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
stamp=.venv/.vidprior-$(basename "$req" .txt).sha
want=$(cat requirements.txt "$req" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # One pip command for the whole pinned set, so that torch is never swapped by a later install.
    .venv/bin/python -m pip install --disable-pip-version-check -q -r "$req"
    .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
    echo "$want" > "$stamp"
fi
