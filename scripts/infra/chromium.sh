#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the offline test of the /docs page (no browser download).
. "$(dirname "$0")/lib.sh"
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
log "installing chromium from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
