#!/usr/bin/env bash
# Base images made from Debian packages with mmdebstrap (no registry is contacted), each tagged local/* and cached
# as a rootfs tarball under $KIND_CACHE/rootfs; an image already present in dockerd is not rebuilt.
# Usage: base-images.sh [static|debian|python|iptables|postgres|redis|kafka|kind-base]... (default: all)
. "$(dirname "$0")/lib.sh"
R="$KIND_CACHE/rootfs"; mkdir -p "$R"
# Smaller images: no docs, man pages or locales (what the slim images on Docker Hub drop too).
SLIM=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
      --dpkgopt='path-exclude=/usr/share/info/*' --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
      # the JRE's postinst registers man pages with update-alternatives and fails without their folder
      --essential-hook='mkdir -p "$1"/usr/share/man/man1')
# This machine's extra CA certificates (an egress proxy's), so pip in an image build trusts what the host trusts.
CA_HOOK=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  CA_HOOK=(--customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1"/usr/local/share/ca-certificates/ && chroot "$1" update-ca-certificates >/dev/null')
fi

# debimage TAG SUITE PACKAGES [docker-import -c CHANGES...] [-- extra mmdebstrap args]
debimage() {
  local tag=$1 suite=$2 pkgs=$3; shift 3
  local changes=() extra=()
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; extra=("$@"); break; fi
    changes+=(-c "$1"); shift
  done
  have_image "$tag" && return 0
  local tar="$R/${tag//[\/:]/_}.tar"
  if [ ! -f "$tar" ]; then
    log "mmdebstrap $suite -> $tag"
    timed "rootfs:$tag" nice -n 10 mmdebstrap --quiet --format=tar --variant=minbase --include="$pkgs" "${SLIM[@]}" "${extra[@]}" \
      "$suite" "$tar.part" "deb $MIRROR $suite main" || return 1
    mv "$tar.part" "$tar"
  fi
  docker import "${changes[@]}" "$tar" "$tag" >/dev/null
  log "image $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

static() {  # a distroless-like base for static Go binaries: CA bundle, passwd/group, /tmp
  have_image local/static:1 && return 0
  local d="$R/static"; rm -rf "$d"; mkdir -p "$d/etc/ssl/certs" "$d/tmp"; chmod 1777 "$d/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$d/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$d/etc/group"
  echo 'hosts: files dns' > "$d/etc/nsswitch.conf"
  tar -C "$d" -cf "$R/static.tar" . && docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' "$R/static.tar" local/static:1 >/dev/null
}

ENVP='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# pip uses its own CA bundle; point it at the system store, which holds this machine's CAs (see CA_HOOK).
PIPCA='ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt'
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(static debian python iptables postgres redis kafka kind-base)
for t in "${want[@]}"; do
  case $t in
    static) static ;;
    debian) debimage "local/debian:$DEBIAN_SUITE" "$DEBIAN_SUITE" ca-certificates "$ENVP" -- "${CA_HOOK[@]}" ;;
    # Python 3.11 from Debian bookworm: the base the platform image is built on here (python:3.11-slim for users).
    python) debimage "local/python:3.11-$DEBIAN_SUITE" "$DEBIAN_SUITE" ca-certificates,python3,python3-venv,python-is-python3,tzdata \
              "$ENVP" 'ENV LANG=C.UTF-8' "$PIPCA" 'CMD ["python3"]' -- "${CA_HOOK[@]}" ;;
    # like upstream's distroless-iptables, for kube-proxy
    iptables) debimage "local/debian-iptables:$DEBIAN_SUITE" "$DEBIAN_SUITE" ca-certificates,iptables,nftables,conntrack,ipset,kmod "$ENVP" ;;
    postgres) debimage "local/postgres-base:15-$DEBIAN_SUITE" "$DEBIAN_SUITE" postgresql-15 "$ENVP" 'ENV LANG=C.UTF-8' ;;
    redis) debimage "local/redis-base:7-$DEBIAN_SUITE" "$DEBIAN_SUITE" redis-server "$ENVP" ;;
    kafka) debimage "local/jre:17-$DEBIAN_SUITE" "$DEBIAN_SUITE" openjdk-17-jre-headless "$ENVP" ;;
    kind-base) bash "$KIND_DIR/kind-base.sh" ;;
    *) log "unknown base image $t"; exit 2 ;;
  esac
done
