#!/usr/bin/env bash
# `make e2e-kind`: the e2e suite on a kind cluster where the platform really runs: the image built from this
# checkout, the operator in-cluster (manifests/overlays/kind), PostgreSQL, Kafka, Redis and provider stand-ins in
# the cluster (e2e/kind/), metrics-server and KEDA, and the production example with every pod Ready.
#
#   bash e2e/run-kind.sh [pytest args...]
#
# Here (default): everything is built from Debian packages and the Go module proxy by scripts/kind/ and cached
# under ~/.cache/pat-booking/kind; no registry is contacted and dockerd is started (and stopped) when not running.
# UPSTREAM=1 (GitHub Actions): kind's node image, python:3.11-slim and the add-ons' releases are pulled instead.
# Env: E2E_KIND_TESTS (e2e/test_kind_flow.py; `e2e` runs every e2e test on kind),
# KIND_CLUSTER (pat-booking-e2e), KEEP_CLUSTER=1 keeps it, IMAGE (pat-booking-be:e2e, as
# manifests/overlays/kind and e2e/kind/platform.yaml expect), VENV (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."

export KIND_CLUSTER=${KIND_CLUSTER:-pat-booking-e2e}
export IMAGE=${IMAGE:-pat-booking-be:e2e}
export UPSTREAM=${UPSTREAM:-0}
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pat-booking-e2e-kind.XXXXXX")
export KUBECONFIG="$WORK/kubeconfig"
K=scripts/kind
T0=$SECONDS

log() { printf '[e2e-kind] %s (+%ss)\n' "$*" "$((SECONDS - T0))" >&2; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -s "$KUBECONFIG" ]; then
    log "failed (rc=$rc); operator log and events:"
    kubectl -n booking-operator-system logs deploy/booking-operator --tail=100 >&2 || true
    kubectl get pods -A -o wide >&2 || true
    kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -60 >&2 || true
  fi
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    bash $K/cluster.sh down >/dev/null 2>&1 || true
    [ "$UPSTREAM" = 1 ] || bash $K/dockerd.sh stop || true
  else
    log "KEEP_CLUSTER=1: cluster $KIND_CLUSTER kept; KUBECONFIG=$KUBECONFIG"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$UPSTREAM" = 1 ]; then
  for tool in docker kind kubectl; do command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }; done
  bash $K/images.sh platform deps
else
  log "building what is not cached yet (scripts/kind/, cache ${PAT_BOOKING_CACHE:-~/.cache/pat-booking}/kind)"
  bash $K/build.sh all
  bash $K/images.sh platform
  export PATH="$(bash scripts/infra/k8s.sh):$PWD/$K/shim:${PAT_BOOKING_CACHE:-$HOME/.cache/pat-booking}/kind/bin:$PATH"
fi
log "images ready"

log "creating kind cluster $KIND_CLUSTER with metrics-server and KEDA"
bash $K/cluster.sh up
bash $K/cluster.sh load "$IMAGE" local/e2e-postgres:1 local/e2e-redis:1 local/e2e-kafka:1 local/otelcol:e2e local/dex:e2e
log "cluster ready"

log "installing PostgreSQL, Kafka, Redis and the provider stand-ins (booking-deps)"
kubectl apply -f e2e/kind/deps.yaml >/dev/null
# the sink's and the topic Job's scripts; their pods wait for this ConfigMap
kubectl -n booking-deps create configmap e2e-scripts --from-file=e2e/kind/sink.py --from-file=e2e/kind/topics.py \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# dex serves HTTPS with a certificate from a CA made for this run; the platform trusts that CA through the
# ConfigMap booking-auth-ca, created with booking-connections in every test namespace (spec.auth.caBundleRef).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pat-booking e2e CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=dex.booking-deps.svc.cluster.local" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:dex.booking-deps.svc.cluster.local,DNS:dex.booking-deps.svc,DNS:dex\n' > "$WORK/san.ext"
openssl x509 -req -days 2 -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -extfile "$WORK/san.ext" -out "$WORK/tls.crt" 2>/dev/null
kubectl -n booking-deps create secret tls dex-tls --cert="$WORK/tls.crt" --key="$WORK/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f e2e/kind/dex.yaml >/dev/null
cp e2e/kind/namespace.yaml "$WORK/namespace.yaml"
{ echo "---"; kubectl create configmap booking-auth-ca --from-file=ca.crt="$WORK/ca.crt" --dry-run=client -o yaml; } \
  >> "$WORK/namespace.yaml"
for d in postgres redis kafka sink dex; do kubectl -n booking-deps rollout status "deploy/$d" --timeout=300s; done
kubectl -n booking-deps wait --for=condition=complete job/kafka-topics --timeout=300s
log "dependencies ready"

log "installing the operator (manifests/overlays/kind)"
kubectl apply -k manifests/overlays/kind >/dev/null
kubectl wait --for=condition=Established crd/bookingplatforms.platform.pat-booking.io --timeout=120s
kubectl -n booking-operator-system rollout status deploy/booking-operator --timeout=300s

log "running the suite"
# On kind the platform really runs: the flow (every pod of the production example Ready, a booking, an HL7
# result, the CronJob, the HPA and KEDA). The operator's many-platform scenarios (drift, pause, SRE edits, KEDA
# fallback) run against the local control plane in `make e2e`, where 14 Deployments cost no CPU; here each
# platform is ~15 Python processes on the host's 2 cores, and a suite of them starved the dependencies.
E2E_PLATFORM_OVERLAY=e2e/kind/platform.yaml E2E_NAMESPACE_OBJECTS="$WORK/namespace.yaml" E2E_KIND_FLOW=1 \
  E2E_CONVERGE_SECONDS="${E2E_CONVERGE_SECONDS:-420}" \
  "$PY" -m pytest "${E2E_KIND_TESTS:-e2e/test_kind_flow.py}" -p no:cacheprovider -v -s -m e2e --timeout=2400 "$@"
log "suite passed"
