"""The one notice dispatcher: notification outbox -> Dramatiq, run by the batch-publisher and `booking run`.

Producers (the API, the consumers, the cron) only write notices to the outbox in their own transaction
(booking_core.db.notify_outbox); this loop hands every due notice to the broker. It wakes as soon as a
producer commits: on PostgreSQL a LISTEN connection receives the NOTIFY the producer's transaction sent
(delivered by PostgreSQL on COMMIT only); on SQLite (`booking run`: one process) the commit sets an event;
`poll_seconds` is the fallback (a wake-up lost while the LISTEN connection reconnects, postponed notices
whose time came, dispatched ones whose lease ran out). Several dispatchers share the work safely: the
claim is `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from booking_core.backoff import backoff_delay
from booking_core.db.notify_outbox import DEFAULT_LEASE, NOTIFY_CHANNEL, Sender, dispatch_due, local_wakeup

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
LISTEN_TIMEOUT_SECONDS = 0.5
# How soon a stop request is seen while the loop waits for a wake-up.
STOP_CHECK_SECONDS = 0.5


def _wait(wake: threading.Event, stop: threading.Event, seconds: float) -> None:
    """Until `wake` is set, `stop` is set or `seconds` passed."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if wake.wait(min(left, STOP_CHECK_SECONDS)):
            return


def listen(
    stop: threading.Event, engine: Engine, wake: threading.Event, *, backoff_max: float = 30.0
) -> None:
    """Set `wake` on every NOTIFY on the notices channel until `stop` is set (PostgreSQL, psycopg 3).

    One pooled connection in autocommit mode holds the LISTEN; a lost connection is opened again with
    backoff, and `wake` is set after each (re)connection, since a notice may have committed meanwhile.
    """
    failures = 0
    while not stop.is_set():
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"LISTEN {NOTIFY_CHANNEL}")
                pg = conn.connection.driver_connection
                assert pg is not None
                failures = 0
                wake.set()
                try:
                    while not stop.is_set():
                        for _ in pg.notifies(timeout=LISTEN_TIMEOUT_SECONDS):
                            wake.set()
                finally:
                    conn.exec_driver_sql("UNLISTEN *")  # the connection goes back to the pool
        except Exception as exc:  # the database went away: listen again once it is back
            failures += 1
            log.warning("notice listener lost", extra={"component": "dispatch", "reason": type(exc).__name__})
            stop.wait(backoff_delay(failures, base=0.5, cap=backoff_max))


def run_dispatcher(
    stop: threading.Event,
    sessions: sessionmaker[Session],
    send: Sender,
    *,
    engine: Engine | None = None,
    poll_seconds: float = POLL_SECONDS,
    lease: timedelta = DEFAULT_LEASE,
    backoff_max: float = 30.0,
    on_pass: Callable[[], None] = lambda: None,
) -> None:
    """Dispatch due notices until `stop` is set: at once when woken, else every `poll_seconds`.

    On PostgreSQL the NOTIFY wakes it for every producer, this process's too, so the in-process wake-up
    is left out (it would only add a second, empty pass per commit); elsewhere it is the wake-up.
    """
    postgres = engine is not None and engine.dialect.name == "postgresql"
    with nullcontext(threading.Event()) if postgres else local_wakeup() as wake:
        listener = None
        if postgres:
            listener = threading.Thread(
                target=listen, args=(stop, engine, wake), name="notice-listener", daemon=True
            )
            listener.start()
        failures = 0
        try:
            while not stop.is_set():
                on_pass()  # the liveness beat
                wake.clear()  # before the pass: a commit during it wakes the next one
                try:
                    dispatch_due(sessions, send, lease=lease)
                    failures = 0
                except Exception as exc:  # database down: the notices stay due
                    failures += 1
                    log.warning(
                        "notice dispatch failed",
                        extra={"component": "dispatch", "reason": type(exc).__name__},
                    )
                    stop.wait(backoff_delay(failures, base=0.5, cap=backoff_max))
                    continue
                _wait(wake, stop, poll_seconds)
        finally:
            if listener is not None:
                listener.join(timeout=5)
