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
# The test launchers (testsupport/booking_testing) are for this checkout only: on the venv's path, never in
# the wheel or the image.
"$VENV/bin/python" - "$PWD/testsupport" <<'PY'
import sys, sysconfig, pathlib
pathlib.Path(sysconfig.get_paths()["purelib"], "booking_testing.pth").write_text(sys.argv[1] + "\n")
PY
