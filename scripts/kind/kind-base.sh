#!/usr/bin/env bash
# kind's base image without pulling: a Debian trixie rootfs (kind's own base is debian:trixie-slim) via mmdebstrap,
# containerd 2.1 / runc 1.3 / CNI plugins from Debian sid, kind v0.33.0's images/base/files on top,
# patched for hosts where nodes cannot run --privileged (files/patch-kind-base.py says why).
. "$(dirname "$0")/lib.sh"
TAG="local/kind-base:$KIND_BASE_SUITE-$KIND_VERSION"
have_image "$TAG" && exit 0
W="$KIND_CACHE/kind-base"; mkdir -p "$W/ctx"; cd "$W"
SRC=$(go mod download -json "sigs.k8s.io/kind@v$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/images/base
PKGS=systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,containerd/sid,runc/sid,containernetworking-plugins/sid
if [ ! -f ctx/rootfs.tar ]; then
  # the mirror may be a frozen snapshot whose sid Release has expired: Check-Valid-Until false
  timed rootfs:kind-base nice -n 10 mmdebstrap --quiet --format=tar --variant=minbase --aptopt="APT::Default-Release \"$KIND_BASE_SUITE\"" \
    --aptopt='Acquire::Check-Valid-Until "false"' --include="$PKGS" \
    --customize-hook='rm -f "$1"/usr/lib/systemd/system/containerd.service' \
    "$KIND_BASE_SUITE" ctx/rootfs.tar.part "deb $MIRROR $KIND_BASE_SUITE main" "deb $MIRROR sid main"
  mv ctx/rootfs.tar.part ctx/rootfs.tar
fi
rm -rf ctx/files; cp -r "$SRC/files" ctx/files; chmod -R u+w ctx/files
python3 "$KIND_DIR/files/patch-kind-base.py" ctx/files
cp "$KIND_CACHE/out/crictl-v$CRICTL_VERSION/crictl" ctx/crictl
cp "$KIND_DIR/files/kind-base.Dockerfile" ctx/Dockerfile
timed image:kind-base docker build -q -t "$TAG" ctx >/dev/null
