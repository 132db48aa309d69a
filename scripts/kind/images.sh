#!/usr/bin/env bash
# The images `make e2e-kind` loads into the cluster, built from this checkout and the caches; none is pulled.
#   pat-booking-be:e2e       the platform (Dockerfile, BASE_IMAGE=local/python:3.11-bookworm)
#   local/e2e-{postgres,redis,kafka}:1, local/otelcol:e2e, local/dex:e2e   dependencies, collector, OIDC
#   local/metrics-server:v…, local/keda*:…                    the cluster add-ons
# Usage: images.sh [platform|deps|addons]... (default: all). UPSTREAM=1 (GitHub Actions): upstream bases, pulled.
. "$(dirname "$0")/lib.sh"
ROOT="$(cd "$KIND_DIR/../.." && pwd)"
IMAGE="${IMAGE:-pat-booking-be:e2e}"
UPSTREAM="${UPSTREAM:-0}"
O="$KIND_CACHE/out"

platform() {
  local base=python:3.11-slim
  if [ "$UPSTREAM" != 1 ]; then bash "$KIND_DIR/base-images.sh" python; base="local/python:3.11-$DEBIAN_SUITE"; fi
  log "building $IMAGE (BASE_IMAGE=$base)"
  local s; s=$(date +%s)
  docker build -q --build-arg BASE_IMAGE="$base" -t "$IMAGE" "$ROOT" >/dev/null
  log "TIMING image:$IMAGE $(( $(date +%s) - s ))s, size $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

# static_image TAG BINARY PATH: a static Go binary at PATH on local/static:1, non-root, PATH its entrypoint.
static_image() {
  local tag=$1 bin=$2 dest=$3 d; d=$(mktemp -d); cp "$bin" "$d/bin"
  printf 'FROM local/static:1\nCOPY bin %s\nUSER 65532:65532\nENTRYPOINT ["%s"]\n' "$dest" "$dest" \
    | docker build -q -t "$tag" -f - "$d" >/dev/null
  rm -rf "$d"
}

deps() {
  local ctx="$ROOT/e2e/kind/images" b
  if [ "$UPSTREAM" = 1 ]; then
    for b in postgres redis; do docker build -q -t "local/e2e-$b:1" -f "$ctx/$b.Dockerfile" "$ctx" >/dev/null; done
    docker pull -q otel/opentelemetry-collector:0.116.0 >/dev/null && docker tag otel/opentelemetry-collector:0.116.0 local/otelcol:e2e
  else
    bash "$KIND_DIR/base-images.sh" static postgres redis kafka
    docker build -q --build-arg BASE="local/postgres-base:15-$DEBIAN_SUITE" -t local/e2e-postgres:1 -f "$ctx/postgres.Dockerfile" "$ctx" >/dev/null
    docker build -q --build-arg BASE="local/redis-base:7-$DEBIAN_SUITE" -t local/e2e-redis:1 -f "$ctx/redis.Dockerfile" "$ctx" >/dev/null
    static_image local/otelcol:e2e "$(bash "$KIND_DIR/otelcol.sh")" /otelcol
  fi
  # the OpenID Connect provider: the dex the auth tests run, static (CGO off), its web assets embedded
  bash "$KIND_DIR/base-images.sh" static
  static_image local/dex:e2e "$(bash "$KIND_DIR/../infra/dex.sh")" /dex
  # Kafka: the jars scripts/infra/kafka.sh fetched, in the build context with the start script.
  local k; k="$(bash "$KIND_DIR/../infra/kafka.sh")"
  local kctx; kctx=$(mktemp -d); cp -r "$k/libs" "$ctx/kafka-run.sh" "$kctx/"
  local kbase="local/jre:17-$DEBIAN_SUITE"; [ "$UPSTREAM" = 1 ] && kbase=debian:bookworm-slim
  docker build -q --build-arg BASE="$kbase" -t local/e2e-kafka:1 -f "$ctx/kafka.Dockerfile" "$kctx" >/dev/null
  rm -rf "$kctx"
  log "dependency images built"
}

addons() {
  bash "$KIND_DIR/base-images.sh" static
  bash "$KIND_DIR/tools.sh" metrics-server keda
  static_image "local/metrics-server:v$METRICS_SERVER_VERSION" "$O/metrics-server-v$METRICS_SERVER_VERSION/metrics-server" /metrics-server
  local k="$O/keda-$KEDA_VERSION"
  # the paths KEDA's own images use (its manifests name them in `command`)
  static_image "local/keda:$KEDA_VERSION" "$k/operator" /keda
  static_image "local/keda-metrics-apiserver:$KEDA_VERSION" "$k/adapter" /usr/local/bin/keda-adapter
  static_image "local/keda-admission-webhooks:$KEDA_VERSION" "$k/webhooks" /keda-admission-webhooks
  log "add-on images built"
}

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(platform deps addons)
for t in "${want[@]}"; do "$t"; done
