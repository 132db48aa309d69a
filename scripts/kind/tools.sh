#!/usr/bin/env bash
# Go-built tools for the kind cluster, through the Go module proxy, each cached with its own stamp:
# kind CLI, crictl, CoreDNS, local-path-provisioner, metrics-server, KEDA (operator, metrics API server, webhooks).
# Usage: tools.sh [kind|crictl|coredns|local-path|metrics-server|keda]... (default: all)
. "$(dirname "$0")/lib.sh"
O="$KIND_CACHE/out"

# goinstall NAME MODULE@VERSION: one binary into $O/NAME-<version>/ with a stamp.
goinstall() {
  local name=$1 pkg=$2 d="$O/$1-${2##*@}"
  stamp_ok "$d" && return 0
  mkdir -p "$d"
  log "building $name (${pkg##*@})"
  timed "$name" nice -n 10 env GOBIN="$d" go install -trimpath -ldflags "-s -w" "$pkg"
  stamp_write "$d"
}

keda() {
  local d="$O/keda-$KEDA_VERSION" src
  stamp_ok "$d" && return 0
  mkdir -p "$d"
  # the module zip carries vendor/modules.txt but no vendor/: -mod=mod, or "import lookup disabled by -mod=vendor"
  src=$(go mod download -json "github.com/kedacore/keda/v2@v$KEDA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$d/src" && cp -r "$src" "$d/src" && chmod -R u+w "$d/src"
  log "building KEDA v$KEDA_VERSION (cold: ~10 min)"
  (cd "$d/src" && timed keda nice -n 10 env GOFLAGS="-modcacherw -mod=mod" \
     go build -trimpath -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" -o "$d/" ./cmd/operator ./cmd/adapter ./cmd/webhooks)
  # keep the kustomize tree (config/) the deployment is made from; drop the rest of the source
  mv "$d/src/config" "$d/config" && rm -rf "$d/src"
  stamp_write "$d"
}

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(kind crictl coredns local-path metrics-server keda)
for t in "${want[@]}"; do
  case $t in
    kind) goinstall kind "sigs.k8s.io/kind@v$KIND_VERSION"; ln -sf "$O/kind-v$KIND_VERSION/kind" "$KIND_CACHE/bin/kind" ;;
    crictl) goinstall crictl "sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL_VERSION" ;;
    coredns) goinstall coredns "github.com/coredns/coredns@v$COREDNS_VERSION" ;;
    local-path) goinstall local-path "github.com/rancher/local-path-provisioner@v$LOCAL_PATH_VERSION" ;;
    metrics-server) goinstall metrics-server "sigs.k8s.io/metrics-server/cmd/metrics-server@v$METRICS_SERVER_VERSION" ;;
    keda) keda ;;
    *) log "unknown tool $t"; exit 2 ;;
  esac
done
