#!/usr/bin/env bash
# The kind node image without a registry: every image kubeadm and kind need is built here (Kubernetes binaries from
# scripts/infra/k8s.sh, etcd from the same cache, CoreDNS, local-path-provisioner, pause, a kindnetd stand-in),
# bundled into a self-made kubernetes-server tarball, then `kind build node-image --type file`.
. "$(dirname "$0")/lib.sh"
NODE="$KIND_NODE_IMAGE"
have_image "$NODE" && exit 0
K8S_BIN="$(bash "$KIND_DIR/../infra/k8s.sh")"
O="$KIND_CACHE/out"; W="$KIND_CACHE/node-image"; rm -rf "$W"; mkdir -p "$W/ctx"
KIND_TAG=v20260820-69b56db7   # the tags kind v0.33.0 hard-codes for kindnetd / local-path-provisioner
HELPER_TAG=v20260131-7181c60a
R=registry.k8s.io; V="v$K8S_VERSION"
# ETCD_VERSION/COREDNS_VERSION differ from kubeadm's defaults: kind-config.yaml names these tags.
ETCD_TAG="$ETCD_VERSION-0"; DNS_TAG="v$COREDNS_VERSION"
[ -x "$O/pause" ] || gcc -Os -static -o "$O/pause" "$KIND_DIR/files/pause.c"
cp "$K8S_BIN"/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,etcd} "$O/pause" \
   "$O/coredns-$DNS_TAG/coredns" "$O/local-path-v$LOCAL_PATH_VERSION/local-path-provisioner" \
   "$KIND_DIR/files/mini-kindnet.sh" "$W/ctx/"

# img TAG BASE DOCKERFILE-BODY: a one-layer image from the files in $W/ctx
img() { printf 'FROM %s\n%s\n' "$2" "$3" | docker build -q -t "$1" -f - "$W/ctx" >/dev/null; }
for c in kube-apiserver kube-controller-manager kube-scheduler; do img "$R/$c:$V" local/static:1 "COPY $c /usr/local/bin/$c"; done
img "$R/kube-proxy:$V" "local/debian-iptables:$DEBIAN_SUITE" 'COPY kube-proxy /usr/local/bin/kube-proxy'
img "$R/etcd:$ETCD_TAG" local/static:1 'COPY etcd /usr/local/bin/etcd
ENTRYPOINT ["/usr/local/bin/etcd"]'
img "$R/coredns/coredns:$DNS_TAG" local/static:1 'COPY coredns /coredns
USER 65532:65532
ENTRYPOINT ["/coredns"]'
img "$R/pause:3.10.2" scratch 'COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]'
docker tag "$R/pause:3.10.2" "$R/pause:3.10"   # kind's containerd config pins sandbox_image pause:3.10
# `kind build node-image` insists on kubeadm's default tags (else it fetches them from the registry): aliases of
# the same images; the cluster itself runs the tags above (kind-config.yaml from cluster.sh).
KUBEADM_ETCD=$("$K8S_BIN/kubeadm" config images list --kubernetes-version "$V" 2>/dev/null | grep /etcd:)
KUBEADM_DNS=$("$K8S_BIN/kubeadm" config images list --kubernetes-version "$V" 2>/dev/null | grep /coredns:)
docker tag "$R/etcd:$ETCD_TAG" "$KUBEADM_ETCD"
docker tag "$R/coredns/coredns:$DNS_TAG" "$KUBEADM_DNS"
img "docker.io/kindest/local-path-provisioner:$KIND_TAG" local/static:1 'COPY local-path-provisioner /usr/local/bin/local-path-provisioner
ENTRYPOINT ["/usr/local/bin/local-path-provisioner"]'
docker tag "local/debian:$DEBIAN_SUITE" "docker.io/kindest/local-path-helper:$HELPER_TAG"
# The Go proxy refuses kindnetd; a single-node stand-in with its contract (env POD_SUBNET, hostPath /etc/cni/net.d).
img "docker.io/kindest/kindnetd:$KIND_TAG" "local/debian:$DEBIAN_SUITE" 'COPY mini-kindnet.sh /bin/kindnetd
ENTRYPOINT ["/bin/kindnetd"]'

# The tarball kind expects: server/bin/{kubeadm,kubelet,kubectl} and image archives; kind reads only the first
# RepoTag of each archive, so the extra images go into kube-proxy.tar behind a `repositories` index (repack-archive.py).
T="$W/tarball/kubernetes"; mkdir -p "$T/server/bin"; echo "$V" > "$T/version"
cp "$K8S_BIN"/{kubeadm,kubelet,kubectl} "$T/server/bin/"
for c in kube-apiserver kube-controller-manager kube-scheduler; do docker save -o "$T/server/bin/$c.tar" "$R/$c:$V"; done
EXTRA=("$R/kube-proxy:$V" "$R/etcd:$ETCD_TAG" "$R/coredns/coredns:$DNS_TAG" "$KUBEADM_ETCD" "$KUBEADM_DNS" "$R/pause:3.10.2" "$R/pause:3.10"
       "docker.io/kindest/kindnetd:$KIND_TAG" "docker.io/kindest/local-path-provisioner:$KIND_TAG" "docker.io/kindest/local-path-helper:$HELPER_TAG")
docker save -o "$W/bundle.tar" "${EXTRA[@]}"
python3 "$KIND_DIR/files/repack-archive.py" "$W/bundle.tar" "$T/server/bin/kube-proxy.tar" > "$W/bundle-tags.txt"
rm "$W/bundle.tar"
# Every image the cluster will want must be in an archive, or containerd would try a registry.
for i in "${EXTRA[@]}"; do
  grep -qx "  archive tag: $i" "$W/bundle-tags.txt" || { log "missing from the node image archive: $i"; exit 1; }
done
(cd "$W/tarball" && tar -cf - kubernetes | gzip -1 > "$W/kubernetes-server-linux-amd64.tar.gz")
# kind first tries `docker pull` of the base image; the shim answers from local images.
timed node-image kind build node-image --type file --base-image "local/kind-base:$KIND_BASE_SUITE-$KIND_VERSION" \
  --image "$NODE" "$W/kubernetes-server-linux-amd64.tar.gz"
rm -rf "$W/tarball" "$W/ctx"
