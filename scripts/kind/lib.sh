#!/usr/bin/env bash
# Shared settings for the kind scripts: pinned versions, version-keyed caches under $PAT_BOOKING_CACHE/kind.
# Everything is built here (Go module proxy, Debian packages): no container registry is ever contacted.
. "$(dirname "${BASH_SOURCE[0]}")/../infra/lib.sh"
KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[kind] %s\n' "$*" >&2; }
KIND_CACHE="$CACHE_ROOT/kind"
KIND_VERSION="0.33.0"
CRICTL_VERSION="1.37.0"          # kind pins 1.36.0; the Go proxy serves 1.34.0 and 1.37.0
COREDNS_VERSION="1.14.3"         # kubeadm 1.36 wants 1.14.2; the proxy serves 1.14.3 first
LOCAL_PATH_VERSION="0.0.30"      # kind pins 0.0.34; the proxy serves 0.0.30
METRICS_SERVER_VERSION="0.8.0"
KEDA_VERSION="2.16.1"
DEBIAN_SUITE="bookworm"          # base of every platform image (Python 3.11, PostgreSQL 15, Redis 7, JDK 17)
KIND_BASE_SUITE="trixie"         # kind's own base is Debian trixie; containerd/runc/CNI come from sid
KIND_NODE_IMAGE="local/kind-node:v$K8S_VERSION"
KIND_CLUSTER="${KIND_CLUSTER:-pat-booking}"
MIRROR="${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# Debian's docker.io 20.10 has no BuildKit; the classic builder is what runs here.
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
mkdir -p "$KIND_CACHE/bin" "$KIND_CACHE/out"
# The docker client the shim and the scripts call: Debian's (it matches dockerd 20.10) when present.
if [ -z "${DOCKER_REAL:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER_REAL=/usr/bin/docker; else DOCKER_REAL="$(command -v docker || echo docker)"; fi
fi
export DOCKER_REAL
# `docker run --privileged` needs every capability in root's bounding set; where CAP_SYS_RESOURCE (bit 24) is missing
# (these machines) kind's nodes cannot start privileged, so shim/docker rewrites the flag (see shim/docker).
cap_bnd=$(awk '/^CapBnd:/{print $2}' /proc/self/status)
if [ "${KIND_DOCKER_SHIM:-auto}" = 1 ] || { [ "${KIND_DOCKER_SHIM:-auto}" = auto ] && (( (0x$cap_bnd >> 24 & 1) == 0 )); }; then
  export PATH="$KIND_DIR/shim:$PATH"
else
  mkdir -p "$KIND_CACHE/realdocker" && ln -sf "$DOCKER_REAL" "$KIND_CACHE/realdocker/docker"
  export PATH="$KIND_CACHE/realdocker:$PATH"
fi
export PATH="$KIND_CACHE/bin:$PATH"

# timed LABEL CMD...: run CMD and print how long it took (the note's per-step figures come from these lines).
timed() { local l=$1 s; s=$(date +%s); shift; "$@"; local rc=$?; log "TIMING $l $(( $(date +%s) - s ))s rc=$rc"; return $rc; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
