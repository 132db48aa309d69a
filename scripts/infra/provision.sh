#!/usr/bin/env bash
# Install or build every real part the tests use; each step is cached and idempotent.
# Users with their own services (BOOKING_TEST_* endpoints, KUBECONFIG) can skip parts with SKIP_K8S=1 etc.;
# SKIP_KIND=1 skips what `make e2e-kind` needs (docker, the node image, KEDA...), which `make test` then builds itself.
. "$(dirname "$0")/lib.sh"
D="$(dirname "$0")"
KIND_SCRIPTS="$D/../kind"
bash "$D/debs.sh"
kind_prep=""
if [ "${SKIP_KIND:-0}" != 1 ]; then
  # apt first (one dpkg lock), then the kind builds run beside ours: cold, the two overlap network and compile time
  bash "$KIND_SCRIPTS/debs.sh"
  bash "$KIND_SCRIPTS/build.sh" prep &
  kind_prep=$!
fi
if [ "${SKIP_CHROMIUM:-0}" != 1 ]; then bash "$D/chromium.sh"; fi
bash "$D/kafka.sh" >/dev/null
if [ "${SKIP_K8S:-0}" != 1 ]; then bash "$D/k8s.sh" >/dev/null; fi
if [ "${SKIP_OTELCOL:-0}" != 1 ]; then bash "$D/otelcol.sh" >/dev/null; fi
if [ "${SKIP_DEX:-0}" != 1 ]; then bash "$D/dex.sh" >/dev/null; fi
if [ "${SKIP_SMTPSINK:-0}" != 1 ]; then bash "$D/smtpsink.sh" >/dev/null; fi
if [ -n "$kind_prep" ]; then
  wait "$kind_prep" || { log "the kind builds failed (scripts/kind/build.sh prep)"; exit 1; }
  # the node image reuses k8s.sh's build of kubelet, kubeadm, kubectl and kube-proxy
  bash "$KIND_SCRIPTS/build.sh" node
  # stop the dockerd the builds started; `make e2e-kind` starts it again
  bash "$KIND_SCRIPTS/dockerd.sh" stop
fi
log "all parts provisioned under $CACHE_ROOT"
