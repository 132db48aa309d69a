#!/usr/bin/env bash
# Create the virtualenv with the project (editable) and its dev dependencies.
# uv is installed into the venv from PyPI and its cache kept under ~/.cache/pat-booking, so reinstalls are fast.
set -euo pipefail
VENV="${1:-.venv}"
CACHE="${PAT_BOOKING_CACHE:-$HOME/.cache/pat-booking}"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv>=0.4"
UV_CACHE_DIR="$CACHE/uv" VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e ".[dev]"
