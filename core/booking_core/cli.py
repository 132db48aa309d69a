"""The `booking` console script: one CLI for every process of the platform.

Subcommands import their app lazily by module path, so `booking_core` keeps no import-time
dependency on the apps (import-linter enforces that direction) and each process loads only its own code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from booking_core import topology

CONSUMERS = tuple(topology.CONSUMERS)
WORKERS = tuple(topology.WORKERS)

# subcommand -> "module:function"; each function takes the parsed argparse namespace and returns an exit code.
ENTRYPOINTS: dict[str, str] = {
    "api": "booking_api.main:cli",
    "consumer": "booking_consumers.main:cli",
    "worker": "booking_workers.main:cli",
    "cron": "booking_workers.cron:cli",
    "migrate": "booking_core.db.migrate:cli",
    "operator": "booking_operator.main:cli",
    "render": "booking_operator.render_cli:cli",
    "crd": "booking_operator.render_cli:crd_cli",
    "run": "booking_api.embedded:cli",
    "dev-token": "booking_api.devtoken:cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = argparse.ArgumentParser(prog="booking", description="pat-booking-be: one CLI for every process")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("api", help="run the FastAPI booking API (uvicorn)")
    c = sub.add_parser("consumer", help="run one Kafka consumer")
    c.add_argument("name", choices=CONSUMERS)
    w = sub.add_parser("worker", help="run one Dramatiq worker")
    w.add_argument("name", choices=WORKERS)
    sub.add_parser("cron", help="one run of the per-minute tasks, then exit")
    sub.add_parser("migrate", help="apply database migrations (Alembic)")
    o = sub.add_parser("operator", help="run the Kopf operator")
    o.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    o.add_argument("--standalone", action="store_true", help="no peering (one replica)")
    r = sub.add_parser("render", help="print every child manifest of a BookingPlatform, no cluster needed")
    r.add_argument("-f", "--file", required=True, help="BookingPlatform YAML ('-' for stdin)")
    r.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    sub.add_parser("crd", help="print the BookingPlatform CustomResourceDefinition")
    run = sub.add_parser("run", help="the whole platform in one process group on embedded defaults")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--no-demo", action="store_true", help="skip the demo data")
    t = sub.add_parser("dev-token", help="mint a JWT with the embedded mode's dev key")
    t.add_argument("--patient", default=None, help="patient id (subject)")
    t.add_argument("--staff", action="store_true", help="a staff token (manages schedules)")
    t.add_argument("--ttl-minutes", type=int, default=60)
    return p


def _load(target: str) -> Callable[[argparse.Namespace], int]:
    module, _, func = target.partition(":")
    fn: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), func)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `booking` console script."""
    args = build_parser().parse_args(argv)
    return _load(ENTRYPOINTS[args.command])(args)


if __name__ == "__main__":
    sys.exit(main())
