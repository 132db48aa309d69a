"""`booking run`: the whole platform in one process on embedded defaults (SQLite, no Kafka, no Redis).

Applies migrations, seeds the demo data, prints a demo token and example commands, starts whatever
consumers and workers are installed in background threads, and serves the API on 127.0.0.1:8000 until
interrupted. It lives with the API because it serves the API; the consumers' and workers' starters are
loaded by module path at run time, so the apps stay independent of each other (import-linter).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn

from booking_api.demo import seed_demo
from booking_api.httpserver import uvicorn_limits
from booking_api.settings import ApiSettings
from booking_api.tokens import Role, mint_token
from booking_core.db.migrate import upgrade
from booking_core.db.session import make_engine, make_session_factory
from booking_core.logs import configure_logging
from booking_core.privatefiles import PRIVATE_UMASK, harden_tree, private_dir
from booking_core.settings import EMBEDDED_DIR

log = logging.getLogger(__name__)

# "module:function" taking a threading.Event; each runs in a daemon thread until the event is set.
BACKGROUND = ("booking_consumers.embedded:start", "booking_workers.embedded:start")


def _load(target: str) -> Callable[[threading.Event], Any] | None:
    module, _, func = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            log.info("not installed, skipped", extra={"component": module})
            return None
        raise
    fn: Callable[[threading.Event], Any] = getattr(mod, func)
    return fn


def start_background(stop: threading.Event) -> list[threading.Thread]:
    """Start the embedded consumers and workers that exist; missing ones are skipped with an info log."""
    threads = []
    for target in BACKGROUND:
        fn = _load(target)
        if fn is None:
            continue
        t = threading.Thread(target=fn, args=(stop,), name=target, daemon=True)
        t.start()
        threads.append(t)
        log.info("started", extra={"component": target})
    return threads


def dev_token(settings: ApiSettings, subject: str, role: Role = "patient", hours: int = 12) -> str:
    """A token for `subject` signed with the dev key (or the configured shared secret), valid for `hours`."""
    return mint_token(
        settings=settings, subject=subject, role=role, now=datetime.now(UTC), ttl=timedelta(hours=hours)
    )


def _banner(host: str, port: int, patient: str | None, token: str | None, staff: str | None) -> str:
    base = f"http://{host}:{port}"
    lines = ["", f"pat-booking-be is running on {base} (OpenAPI: {base}/docs)", ""]
    if patient and token:
        lines += [
            f"Demo patient: {patient}",
            f"export TOKEN={token}",
            "",
            f"curl -s {base}/api/v1/clinics",
            # A page of 20 (`limit` up to 100); `next_cursor` goes back as `cursor` for the next one.
            f"curl -s '{base}/api/v1/slots?service=blood-draw&limit=5'",
            f'curl -s -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $(uuidgen)" \\\n'
            f"  -H 'Content-Type: application/json' -d '{{\"slot_id\": \"<items[].id of /slots>\"}}' \\\n"
            f"  {base}/api/v1/bookings",
            f'curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/bookings',
            f'curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/test-results',
        ]
    if staff:
        lines += ["", f"Staff token: {staff}"]
    return "\n".join(lines) + "\n"


def cli(args: argparse.Namespace) -> int:
    """Entry point of `booking run`."""
    # Everything this process group writes (database, WAL, emails) is owner-only; older files too.
    os.umask(PRIVATE_UMASK)
    harden_tree(private_dir(EMBEDDED_DIR))
    settings = ApiSettings()
    configure_logging(settings.log_level, "text")
    host = getattr(args, "host", "127.0.0.1")
    port = int(getattr(args, "port", 8000))
    upgrade(settings.database_url)
    patient = None
    if not getattr(args, "no_demo", False):
        engine = make_engine(settings.database_url)
        with make_session_factory(engine)() as session:
            patient = seed_demo(session)
        engine.dispose()
    is_dev = settings.dev_auth
    token = dev_token(settings, patient) if patient and is_dev else None
    staff = dev_token(settings, "demo-staff", role="staff") if is_dev else None
    stop = threading.Event()
    threads = start_background(stop)
    print(_banner(host, port, patient, token, staff), flush=True)  # noqa: T201 - the newcomer's instructions
    try:
        uvicorn.run(
            "booking_api.app:create_app",
            factory=True,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            **uvicorn_limits(settings),
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return 0
