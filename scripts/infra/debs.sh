#!/usr/bin/env bash
# PostgreSQL, Redis, Prometheus (server + promtool), the Pushgateway and wrk (the bench's load generator)
# from Debian's packages
# (root on these machines; sudo elsewhere).
. "$(dirname "$0")/lib.sh"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# promtool checks and unit-tests the alert rules; the server scrapes the processes in an integration test.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
# A compiled load generator: a Python client on the same cores caps the baseline it measures (issue 15).
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
log "installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
# Another apt run (a second checkout provisioning) holds the lock for a while: wait, do not fail.
APT=(apt-get -o DPkg::Lock::Timeout=900)
$SUDO "${APT[@]}" update -qq
$SUDO "${APT[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system services we do not use; tests run their own throwaway servers.
$SUDO service postgresql stop >/dev/null 2>&1 || true
$SUDO service redis-server stop >/dev/null 2>&1 || true
$SUDO service prometheus stop >/dev/null 2>&1 || true
$SUDO service prometheus-pushgateway stop >/dev/null 2>&1 || true
$SUDO service prometheus-node-exporter stop >/dev/null 2>&1 || true
