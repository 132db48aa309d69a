#!/usr/bin/env bash
# dockerd.sh start|stop: start dockerd when no daemon answers (and remember that we did); stop only a daemon we started.
. "$(dirname "$0")/lib.sh"
PIDF="$KIND_CACHE/dockerd.pid"
case "${1:-start}" in
start)
  if "$DOCKER_REAL" info >/dev/null 2>&1; then exit 0; fi
  command -v dockerd >/dev/null || { log "dockerd is not installed (scripts/kind/debs.sh installs Debian's docker.io)"; exit 1; }
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "starting dockerd (log: $KIND_CACHE/dockerd.log)"
  # containerd of docker.io is started by dockerd itself; iptables stays on so kind's bridge network can NAT.
  $SUDO sh -c "nohup dockerd >'$KIND_CACHE/dockerd.log' 2>&1 & echo \$! >'$PIDF'"
  for _ in $(seq 1 60); do "$DOCKER_REAL" info >/dev/null 2>&1 && exit 0; sleep 1; done
  log "dockerd did not answer within 60 s; see $KIND_CACHE/dockerd.log"; exit 1 ;;
stop)
  [ -f "$PIDF" ] || exit 0
  pid=$(cat "$PIDF"); rm -f "$PIDF"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "stopping the dockerd we started (pid $pid)"
  $SUDO kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do $SUDO kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
