#!/usr/bin/env bash
# build.sh [prep|node|all]: everything `make e2e-kind` needs that does not depend on this checkout's code, built here
# from Debian packages and the Go module proxy and cached under $PAT_BOOKING_CACHE/kind (no registry is contacted).
#   prep  dockerd, the kind CLI, crictl, the Debian base images, CoreDNS, local-path, metrics-server and KEDA
#   node  the node image (needs scripts/infra/k8s.sh's build) and the add-on and dependency images
# provision.sh runs `prep` beside its own builds (the two cores overlap network, dpkg and compile time), then `node`.
. "$(dirname "$0")/lib.sh"
K="$KIND_DIR"

prep() {
  bash "$K/debs.sh"
  bash "$K/dockerd.sh" start
  # the kind base image needs crictl; the Debian bases (network and dpkg bound) build while the Go tools compile
  bash "$K/tools.sh" kind crictl
  bash "$K/base-images.sh" &
  local bases=$!
  bash "$K/tools.sh"
  wait "$bases"
}

node() {
  bash "$K/dockerd.sh" start
  bash "$K/node-image.sh"
  bash "$K/images.sh" addons deps
}

case "${1:-all}" in
  prep) prep ;;
  node) node ;;
  all) prep; node ;;
  *) echo "usage: $0 [prep|node|all]" >&2; exit 2 ;;
esac
