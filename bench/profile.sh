#!/usr/bin/env bash
# `make profile`: the API bench with py-spy recording each phase; speedscope files under bench/results/.
#   bash bench/profile.sh [search,create,list]     (BENCH_API_WORKERS, BENCH_API_SECONDS as for bench/api.py)
# Open a file in https://www.speedscope.app, or print its hottest functions:
#   .venv/bin/python -P bench/report/profile_top.py bench/results/profiles/profile-create.speedscope.json
# py-spy reads other processes' memory (ptrace): in a container that needs CAP_SYS_PTRACE.
set -euo pipefail
cd "$(dirname "$0")/.."
PHASES="${1:-search,create,list}"
OUT=bench/results/profiles
STATE="$(pwd)/.infra-profile"
mkdir -p "$OUT"
rm -f "$OUT"/profile-*.speedscope.json  # only this run's phases below
.venv/bin/python -m booking_testing.infra up --state "$STATE" postgres >/dev/null
trap '.venv/bin/python -m booking_testing.infra down --state "$STATE" >/dev/null' EXIT
# shellcheck disable=SC1091
source "$STATE/env"
# One worker by default: one process's samples read as one server's time.
BENCH_API_WORKERS="${BENCH_API_WORKERS:-1}" .venv/bin/python -P bench/api.py --only "$PHASES" \
  --profile "$OUT" --out "$OUT/api-profiled.json"
# The functions that held the GIL most, per phase (the inclusive ranking: profile_top.py without sed).
for f in "$OUT"/profile-*.speedscope.json; do
  .venv/bin/python -P bench/report/profile_top.py "$f" --top 15 | sed -n '1p;/by self time/,$p'
  echo
done
