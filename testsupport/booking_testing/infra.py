"""`make infra-up` / `make infra-down`: every real part started for manual work, state under .infra/.

python -m booking_testing.infra up      # PostgreSQL, Redis, Kafka, kube-apiserver, dex -> .infra/env
python -m booking_testing.infra down
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from booking_testing.dex import API_CLIENT, CLIENT_SECRETS, PASSWORD, PATIENT_CLIENT, start_dex
from booking_testing.kafka import start_kafka
from booking_testing.kube import start_kube, stop_dir
from booking_testing.postgres import create_database, start_postgres
from booking_testing.procs import InfraError
from booking_testing.redis import start_redis

PARTS = ("postgres", "redis", "kafka", "kube", "dex")


def up(state: Path, parts: list[str]) -> int:
    """Start the chosen parts, write state/env with the exports, print it."""
    down(state)
    # fresh data every time: a stale database or Kafka log would leak between sessions
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    lines: list[str] = []
    try:
        if "postgres" in parts:
            pg = start_postgres(state / "postgres")
            create_database(pg.url(), "booking")
            lines += [
                f"export BOOKING_DATABASE_URL={pg.url('booking')}",
                f"export BOOKING_TEST_DATABASE_URL={pg.url()}",
            ]
        if "redis" in parts:
            rs = start_redis(state / "redis")
            lines += [f"export BOOKING_REDIS_URL={rs.url}", f"export BOOKING_TEST_REDIS_URL={rs.url}"]
        if "kafka" in parts:
            ks = start_kafka(state / "kafka")
            lines += [
                f"export BOOKING_KAFKA_BOOTSTRAP_SERVERS={ks.bootstrap}",
                f"export BOOKING_TEST_KAFKA_BOOTSTRAP={ks.bootstrap}",
            ]
        if "kube" in parts:
            kc = start_kube(state / "kube")
            lines.append(f"export KUBECONFIG={kc.kubeconfig}")
        if "dex" in parts:
            # Not BOOKING_AUTH_*: sourcing the env must not switch `booking run` off its dev key.
            dx = start_dex(state / "dex")
            lines += [
                f"export BOOKING_TEST_OIDC_ISSUER={dx.issuer}",
                f"# booking api against it: BOOKING_ENVIRONMENT=prod BOOKING_AUTH_ISSUER={dx.issuer} "
                f"BOOKING_AUTH_AUDIENCE={API_CLIENT} BOOKING_AUTH_PATIENT_ID_CLAIM=preferred_username "
                "BOOKING_AUTH_ROLE_CLAIM=groups",
                f"# a token (id_token): curl -s -u {PATIENT_CLIENT}:{CLIENT_SECRETS[PATIENT_CLIENT]} "
                f"-d grant_type=password -d username=patient-a@example.org -d password={PASSWORD} "
                f"--data-urlencode 'scope=openid profile groups audience:server:client_id:{API_CLIENT}' "
                f"{dx.issuer}/token",
            ]
    except InfraError as exc:
        print(f"infra-up failed: {exc}", file=sys.stderr)
        down(state)
        return 1
    env = state / "env"
    env.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"# source {env}   (stop with: make infra-down)")
    return 0


def down(state: Path) -> int:
    """Stop everything whose pid file lies under state/."""
    if state.exists():
        for d in sorted({p.parent for p in state.rglob("*.pid")}):
            stop_dir(d)
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m booking_testing.infra")
    p.add_argument("action", choices=("up", "down"))
    p.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    p.add_argument("--state", type=Path, default=Path(".infra"))
    # intermixed: `up --state DIR postgres redis` (bench/run.sh) as well as `up postgres --state DIR`
    args = p.parse_intermixed_args(argv)
    state: Path = args.state.resolve()
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return up(state, args.parts or list(PARTS)) if args.action == "up" else down(state)


if __name__ == "__main__":
    sys.exit(main())
