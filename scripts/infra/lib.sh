#!/usr/bin/env bash
# Shared settings for the provisioning scripts: versions are pins, caches are version-keyed.
set -euo pipefail
CACHE_ROOT="${PAT_BOOKING_CACHE:-$HOME/.cache/pat-booking}"
K8S_VERSION="1.36.3"
ETCD_VERSION="3.6.16"
KWOK_VERSION="0.8.0"
KAFKA_VERSION="4.3.1"
SLF4J_VERSION="2.0.20"
# dex v2.45.1 (tag commit 11d2eeb5): its tags are not module versions (no /v2 path), so the pseudo-version.
DEX_VERSION="2.45.1"
DEX_MODULE_VERSION="v0.0.0-20260303133905-11d2eeb52b42"
export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0

log() { printf '[provision] %s\n' "$*" >&2; }

# stamp_ok DIR: the component in DIR was built completely before.
stamp_ok() { [ -f "$1/.stamp" ]; }
stamp_write() { date -u +%FT%TZ > "$1/.stamp"; }
