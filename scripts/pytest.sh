#!/usr/bin/env bash
# Run pytest; "no tests collected" (exit 5) is an error, never a silent pass.
set -uo pipefail
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests for: $*" >&2; exit 1; fi
exit "$rc"
