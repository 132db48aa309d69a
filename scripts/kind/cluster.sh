#!/usr/bin/env bash
# cluster.sh up|down|load IMAGE...|addons — the kind cluster of `make e2e-kind`.
#   up      create it (KUBECONFIG: where its kubeconfig goes) and install the add-ons
#   load    `kind load docker-image` each image (so pods never pull)
#   addons  metrics-server and KEDA (operator, metrics API server, admission webhooks), from their own manifests
# UPSTREAM=1 (GitHub Actions): kind's default node image and the upstream add-on releases, pulled.
. "$(dirname "$0")/lib.sh"
: "${KUBECONFIG:?cluster.sh needs KUBECONFIG (the file kind writes)}"
UPSTREAM="${UPSTREAM:-0}"
if [ "$UPSTREAM" != 1 ]; then
  # the kubectl of the cluster's own version (the host's may be minors behind)
  export PATH="$(bash "$KIND_DIR/../infra/k8s.sh"):$PATH"
fi

config() {
  local v1=0; [ -f /sys/fs/cgroup/cgroup.controllers ] || v1=1
  cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
YAML
  if [ "$v1" = 1 ]; then
    # cgroup v1 host: runc's systemd driver freezes a pod's cgroup to apply its device rules, and under load the
    # freeze times out ("unable to freeze", FailedCreatePodSandBox) until the converge deadline passes. The
    # cgroupfs driver (kind's own default before 1.24) never freezes; containerd and kubelet must agree on it.
    cat <<'YAML'
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
YAML
  fi
  cat <<YAML
kubeadmConfigPatches:
- |
  # kubelet 1.35+ refuses cgroup v1 hosts (these machines) unless told otherwise
  kind: KubeletConfiguration
  failCgroupV1: false
YAML
  [ "$v1" = 1 ] && echo "  cgroupDriver: cgroupfs"
  if [ "$UPSTREAM" != 1 ]; then
    # the etcd and CoreDNS built here (node-image.sh), not kubeadm's default tags
    cat <<YAML
- |
  kind: ClusterConfiguration
  etcd:
    local:
      imageTag: "$ETCD_VERSION-0"
  dns:
    imageTag: "v$COREDNS_VERSION"
YAML
  fi
}

up() {
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    kind export kubeconfig --name "$KIND_CLUSTER" >/dev/null
  else
    local img=()
    [ "$UPSTREAM" = 1 ] || img=(--image "$KIND_NODE_IMAGE")
    config > "$KIND_CACHE/kind-config.yaml"
    timed cluster-create kind create cluster --name "$KIND_CLUSTER" "${img[@]}" --config "$KIND_CACHE/kind-config.yaml" --wait 300s
  fi
  addons
}

down() { kind delete cluster --name "$KIND_CLUSTER"; }

load() { local i; for i in "$@"; do kind load docker-image "$i" --name "$KIND_CLUSTER" >/dev/null; done; }

addons() {
  local W="$KIND_CACHE/addons"; rm -rf "$W"; mkdir -p "$W/ms" "$W/keda"
  local ms="v$METRICS_SERVER_VERSION"
  if [ "$UPSTREAM" = 1 ]; then
    echo "resources: [https://github.com/kubernetes-sigs/metrics-server/releases/download/$ms/components.yaml]" > "$W/ms/kustomization.yaml"
  else
    load "local/metrics-server:$ms" "local/keda:$KEDA_VERSION" "local/keda-metrics-apiserver:$KEDA_VERSION" \
      "local/keda-admission-webhooks:$KEDA_VERSION"
    cp -r "$(go mod download -json "sigs.k8s.io/metrics-server@$ms" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/manifests/base" "$W/ms/base"
    chmod -R u+w "$W/ms"
    cat > "$W/ms/kustomization.yaml" <<YAML
resources: [base]
images: [{name: gcr.io/k8s-staging-metrics-server/metrics-server, newName: local/metrics-server, newTag: $ms}]
YAML
  fi
  # kind's kubelets serve self-signed certificates
  cat >> "$W/ms/kustomization.yaml" <<'YAML'
patches:
- target: {kind: Deployment, name: metrics-server}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: --kubelet-insecure-tls}
    - {op: replace, path: /spec/template/spec/containers/0/imagePullPolicy, value: IfNotPresent}
    - {op: add, path: /spec/template/spec/containers/0/resources/requests/cpu, value: 10m}
YAML
  kubectl apply -k "$W/ms" >/dev/null
  if [ "$UPSTREAM" = 1 ]; then
    kubectl apply --server-side -f "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml" >/dev/null
  else
    # KEDA's own kustomize tree (config/, kept by tools.sh from its Go module): what its release manifest is made of
    cp -r "$KIND_CACHE/out/keda-$KEDA_VERSION/config" "$W/keda/config"
    cat > "$W/keda/kustomization.yaml" <<YAML
resources: [config/default]
images:
- {name: ghcr.io/kedacore/keda, newName: local/keda, newTag: "$KEDA_VERSION"}
- {name: ghcr.io/kedacore/keda-metrics-apiserver, newName: local/keda-metrics-apiserver, newTag: "$KEDA_VERSION"}
- {name: ghcr.io/kedacore/keda-admission-webhooks, newName: local/keda-admission-webhooks, newTag: "$KEDA_VERSION"}
patches:
- target: {kind: Deployment}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/imagePullPolicy, value: IfNotPresent}
    # a kind node has the host's cores; the platform needs the room more than these idle controllers
    - {op: add, path: /spec/template/spec/containers/0/resources/requests/cpu, value: 10m}
YAML
    kubectl apply --server-side -k "$W/keda" >/dev/null
  fi
  kubectl wait --for=condition=Established crd/scaledobjects.keda.sh --timeout=120s >/dev/null
  kubectl -n kube-system rollout status deploy/metrics-server --timeout=300s
  local d; for d in keda-operator keda-metrics-apiserver keda-admission; do kubectl -n keda rollout status "deploy/$d" --timeout=300s; done
  kubectl wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout=180s >/dev/null
}

case "${1:-}" in
  up) up ;; down) down ;; addons) addons ;;
  load) shift; load "$@" ;;
  *) echo "usage: $0 up|down|load IMAGE...|addons" >&2; exit 2 ;;
esac
