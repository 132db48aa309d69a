#!/usr/bin/env bash
# `make bench`: start the real parts once, run every bench/*.py, collect their JSON under bench/results/.
# Each benchmark measures its own baseline in the same run and reports ratios: these machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$(pwd)/.infra-bench"
mkdir -p bench/results
ONLY="${BENCH:-}"
# The workers and events parts alone start only what they use: an idle Kafka and control plane took
# ~6% of a core from the workers' figure on two cores. Every part otherwise.
case "$ONLY" in
  workers) PARTS="postgres redis" ;;
  events) PARTS="postgres redis kafka" ;;
  *) PARTS="postgres redis kafka kube" ;;
esac
# shellcheck disable=SC2086
.venv/bin/python -m booking_testing.infra up --state "$STATE" $PARTS >/dev/null
trap '.venv/bin/python -m booking_testing.infra down --state "$STATE" >/dev/null' EXIT
# shellcheck disable=SC1091
source "$STATE/env"
status=0
for script in bench/*.py; do
  name="$(basename "$script" .py)"
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && continue
  echo "== bench $name"
  # -P: bench/ must not shadow standard modules (bench/operator.py vs the stdlib operator)
  if ! .venv/bin/python -P "$script" --out "bench/results/$name.json"; then
    echo "bench $name failed" >&2; status=1
  fi
done
# One table of every figure with its baseline, ratio and goal (also bench/results/summary.json).
echo "== summary (details in bench/results/*.json)"
.venv/bin/python -P bench/report/summary.py --results bench/results || status=1
exit "$status"
