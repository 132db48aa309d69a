#!/usr/bin/env bash
# `make e2e`: the e2e suite against a local control plane (kube-apiserver, controller-manager,
# scheduler, etcd, KWOK), with the operator as a host process, since KWOK runs no containers.
#
#   bash e2e/run-local.sh [pytest args...]
#
# Env: VENV (.venv), E2E_WORKDIR (a fresh temp dir), KEDA_CRDS_DIR (third_party/keda),
#      CRDS (crds/), E2E_KEEP=1 leaves the control plane and the operator running afterwards,
#      E2E_EXISTING_CLUSTER=1 uses the cluster KUBECONFIG already names instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
BOOKING="$VENV/bin/booking"
WORK=${E2E_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/pat-booking-e2e.XXXXXX")}
mkdir -p "$WORK"
KEDA_CRDS_DIR=${KEDA_CRDS_DIR:-third_party/keda}
CRDS=${CRDS:-crds/}
CRD=bookingplatforms.platform.pat-booking.io
OPERATOR_PID=""

log() { printf '[e2e] %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    log "E2E_KEEP=1: left running; KUBECONFIG=$WORK/kube/kubeconfig, operator pid ${OPERATOR_PID:-none}"
    exit "$rc"
  fi
  if [ -n "$OPERATOR_PID" ] && kill -0 "$OPERATOR_PID" 2>/dev/null; then
    kill "$OPERATOR_PID" 2>/dev/null || true
    wait "$OPERATOR_PID" 2>/dev/null || true
  fi
  if [ "${E2E_EXISTING_CLUSTER:-0}" != 1 ]; then
    "$PY" -m booking_testing.kube down --dir "$WORK/kube" >/dev/null 2>&1 || true
  fi
  if [ "$rc" -ne 0 ]; then
    log "failed (rc=$rc); operator log: $WORK/operator.log, control plane logs: $WORK/kube/*.log"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_until SECONDS WHAT CMD...: poll CMD until it succeeds, or fail after SECONDS.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

if [ "${E2E_EXISTING_CLUSTER:-0}" = 1 ]; then
  : "${KUBECONFIG:?E2E_EXISTING_CLUSTER=1 needs KUBECONFIG}"
  log "using the cluster in $KUBECONFIG"
else
  log "starting the control plane in $WORK/kube"
  "$PY" -m booking_testing.kube up --dir "$WORK/kube"
  export KUBECONFIG="$WORK/kube/kubeconfig"
fi
test -s "$KUBECONFIG" || { log "no kubeconfig at $KUBECONFIG"; exit 1; }

# Cluster-wide changes beyond our own CRD (KEDA's CRDs installed, removed and reinstalled by the
# fallback test) only on the control plane started here, or on an existing kind cluster the user
# marked disposable (BOOKING_TEST_DISPOSABLE_CLUSTER=1): never on somebody's real cluster.
OWN_CLUSTER=1
if [ "${E2E_EXISTING_CLUSTER:-0}" = 1 ]; then
  if why=$("$PY" -c 'import os
from booking_testing.disposable import not_disposable_because
print(not_disposable_because(os.environ["KUBECONFIG"]) or "")'); [ -n "$why" ]; then
    OWN_CLUSTER=0
    log "existing cluster not marked disposable ($why): KEDA's CRDs are left alone"
  fi
fi

log "installing the BookingPlatform CRD"
"$PY" e2e/kubetool.py apply "$CRDS"
"$PY" e2e/kubetool.py wait-crd "$CRD" --timeout 60
if [ "$OWN_CLUSTER" = 1 ] && [ -d "$KEDA_CRDS_DIR" ]; then
  log "installing KEDA's CRDs"
  "$PY" e2e/kubetool.py apply "$KEDA_CRDS_DIR"
  "$PY" e2e/kubetool.py wait-crd scaledobjects.keda.sh --timeout 60
  # The suite may remove and reinstall them (the HPA fallback test).
  E2E_KEDA_CRDS_DIR=$(cd "$KEDA_CRDS_DIR" && pwd)
  export E2E_KEDA_CRDS_DIR
elif [ "$OWN_CLUSTER" = 1 ]; then
  log "no KEDA CRDs at $KEDA_CRDS_DIR: the KEDA tests will be skipped"
fi

METRICS_PORT=$(free_port)
LIVENESS_PORT=$(free_port)
log "starting the operator (metrics :$METRICS_PORT, liveness :$LIVENESS_PORT)"
# Short resync and KEDA re-check intervals keep the suite fast; production uses the defaults.
BOOKING_LOG_FORMAT=text \
  BOOKING_OPERATOR_METRICS_PORT="$METRICS_PORT" \
  BOOKING_OPERATOR_LIVENESS_PORT="$LIVENESS_PORT" \
  BOOKING_OPERATOR_RESYNC_SECONDS="${E2E_RESYNC_SECONDS:-5}" \
  BOOKING_OPERATOR_KEDA_RECHECK_SECONDS="${E2E_KEDA_RECHECK_SECONDS:-3}" \
  "$BOOKING" operator --standalone >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
export E2E_OPERATOR_LOG="$WORK/operator.log"
export E2E_OPERATOR_METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"

healthy() {
  kill -0 "$OPERATOR_PID" && "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "http://127.0.0.1:$LIVENESS_PORT/healthz"
}
if ! wait_until 60 "the operator's /healthz" healthy; then
  tail -50 "$WORK/operator.log" >&2
  exit 1
fi

log "running the suite"
# test_kind_flow needs the in-cluster dependencies only `make e2e-kind` installs: not collected here.
"$PY" -m pytest e2e -p no:cacheprovider -v -m e2e --timeout=900 --ignore=e2e/test_kind_flow.py "$@"
