#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, etcd and KWOK through the Go module proxy.
# Honours KUBEBUILDER_ASSETS-style shortcuts: nothing is built when the stamp exists.
. "$(dirname "$0")/lib.sh"
W="$CACHE_ROOT/k8s-v$K8S_VERSION"
BIN="$W/bin"
if stamp_ok "$W"; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
SV="0.${K8S_VERSION#1.}"; MINOR="${K8S_VERSION#1.}"; MINOR="${MINOR%%.*}"

if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kube-controller-manager" ] || [ ! -x "$BIN/kube-scheduler" ]; then
  log "building Kubernetes v$K8S_VERSION control plane (cold: 15-30 min)"
  mkdir -p "$W/src" && cd "$W/src"
  GOMOD=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf 'module local/k8sbin\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
    awk -v v="v$SV" '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print "\t"$1" => "$1" "v}' "$GOMOD"
    printf ')\n\ntool (\n\tk8s.io/kubernetes/cmd/kube-apiserver\n\tk8s.io/kubernetes/cmd/kube-controller-manager\n\tk8s.io/kubernetes/cmd/kube-scheduler\n)\n'
  } > go.mod
  go mod tidy
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
fi

if [ ! -x "$BIN/etcd" ]; then
  log "building etcd v$ETCD_VERSION"
  mkdir -p "$W/etcd-src" && cd "$W/etcd-src"
  printf 'module local/etcdbin\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION" > go.mod
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

if [ ! -x "$BIN/kwok" ]; then
  log "building KWOK v$KWOK_VERSION"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
fi
# KWOK's stage definitions ship in its module; kwok exits with "no stages found" without them.
STAGES="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$STAGES/$f" ] && { cat "$STAGES/$f"; printf '\n---\n'; }
  done
} > "$W/kwok-stages.yaml"
rm -rf "$W/src" "$W/etcd-src"
stamp_write "$W"
log "control plane binaries in $BIN"
echo "$BIN"
