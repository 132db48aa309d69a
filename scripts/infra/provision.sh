#!/usr/bin/env bash
# Install or build every real part the tests use; each step is cached and idempotent.
# Users with their own services (BOOKING_TEST_* endpoints, KUBECONFIG) can skip parts with SKIP_K8S=1 etc.
. "$(dirname "$0")/lib.sh"
D="$(dirname "$0")"
bash "$D/debs.sh"
if [ "${SKIP_CHROMIUM:-0}" != 1 ]; then bash "$D/chromium.sh"; fi
bash "$D/kafka.sh" >/dev/null
if [ "${SKIP_K8S:-0}" != 1 ]; then bash "$D/k8s.sh" >/dev/null; fi
if [ "${SKIP_OTELCOL:-0}" != 1 ]; then bash "$D/otelcol.sh" >/dev/null; fi
if [ "${SKIP_DEX:-0}" != 1 ]; then bash "$D/dex.sh" >/dev/null; fi
log "all parts provisioned under $CACHE_ROOT"
