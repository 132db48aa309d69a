#!/usr/bin/env bash
# Build the Kubernetes binaries (control plane for the local e2e; kubelet, kubeadm, kubectl and kube-proxy for the
# kind node image), etcd and KWOK through the Go module proxy. All Kubernetes commands come from one `go build`,
# so their shared packages compile once. Nothing is built when the stamp exists and every binary is there.
. "$(dirname "$0")/lib.sh"
W="$CACHE_ROOT/k8s-v$K8S_VERSION"
BIN="$W/bin"
CMDS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)
missing=0; for c in "${CMDS[@]}" etcd kwok; do [ -x "$BIN/$c" ] || missing=1; done
if stamp_ok "$W" && [ $missing = 0 ]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
SV="0.${K8S_VERSION#1.}"; MINOR="${K8S_VERSION#1.}"; MINOR="${MINOR%%.*}"

need=0; for c in "${CMDS[@]}"; do [ -x "$BIN/$c" ] || need=1; done
if [ $need = 1 ]; then
  log "building Kubernetes v$K8S_VERSION: ${CMDS[*]} (cold: 20-35 min)"
  mkdir -p "$W/src" && cd "$W/src"
  GOMOD=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf 'module local/k8sbin\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
    awk -v v="v$SV" '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print "\t"$1" => "$1" "v}' "$GOMOD"
    printf ')\n\ntool (\n'; printf '\tk8s.io/kubernetes/cmd/%s\n' "${CMDS[@]}"; printf ')\n'
  } > go.mod
  go mod tidy
  # kubeadm checks its own version against the node's; kubectl reports client-go's.
  V=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    V="$V -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
  done
  go build -trimpath -ldflags "-s -w $V" -o "$BIN/" "${CMDS[@]/#/k8s.io/kubernetes/cmd/}"
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
