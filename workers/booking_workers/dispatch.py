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
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from booking_core.backoff import backoff_delay
from booking_core.db.notify_outbox import (
    DEFAULT_LEASE,
    NOTIFY_CHANNEL,
    GroupSender,
    Sender,
    dispatch_due,
    local_wakeup,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# How soon a stop request is seen while the loop waits for a wake-up.
STOP_CHECK_SECONDS = 0.5


def _wait(wake: threading.Event, stop: threading.Event, seconds: float) -> None:
    """Until `wake` is set, `stop` is set or `seconds` passed."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if wake.wait(min(left, STOP_CHECK_SECONDS)):
            return


def _run_listening(
    stop: threading.Event,
    engine: Engine,
    pass_: Callable[[], None],
    *,
    poll_seconds: float,
    backoff_max: float,
) -> None:
    """PostgreSQL: one pooled autocommit connection holds the LISTEN and the loop waits on it itself.

    Waiting on the connection in the dispatching thread (no listener thread handing over an event)
    saves a thread switch per wake-up, which a busy 2-core node makes cost tens of milliseconds. A
    lost connection (or a failed pass: the database is down) is opened again with backoff; the pass
    after each (re)connection picks up whatever committed meanwhile.
    """
    failures = 0
    while not stop.is_set():
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"LISTEN {NOTIFY_CHANNEL}")
                pg = conn.connection.driver_connection
                assert pg is not None
                try:
                    while not stop.is_set():
                        pass_()
                        failures = 0
                        deadline = time.monotonic() + poll_seconds
                        woken = False
                        while not (woken or stop.is_set()) and (left := deadline - time.monotonic()) > 0:
                            for _ in pg.notifies(timeout=min(left, STOP_CHECK_SECONDS), stop_after=1):
                                woken = True
                finally:
                    conn.exec_driver_sql("UNLISTEN *")  # the connection goes back to the pool
        except Exception as exc:  # the database went away: listen again once it is back
            failures += 1
            reason = type(exc).__name__
            log.warning("notice dispatch failed", extra={"component": "dispatch", "reason": reason})
            stop.wait(backoff_delay(failures, base=0.5, cap=backoff_max))


def _run_local(
    stop: threading.Event, pass_: Callable[[], None], *, poll_seconds: float, backoff_max: float
) -> None:
    """One process (`booking run` on SQLite): woken by the commits of this process."""
    failures = 0
    with local_wakeup() as wake:
        while not stop.is_set():
            wake.clear()  # before the pass: a commit during it wakes the next one
            try:
                pass_()
                failures = 0
            except Exception as exc:  # database locked or gone: the notices stay due
                failures += 1
                reason = type(exc).__name__
                log.warning("notice dispatch failed", extra={"component": "dispatch", "reason": reason})
                stop.wait(backoff_delay(failures, base=0.5, cap=backoff_max))
                continue
            _wait(wake, stop, poll_seconds)


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
    send_group: GroupSender | None = None,
    group_size: int = 1,
) -> None:
    """Dispatch due notices until `stop` is set: at once when woken, else every `poll_seconds`.

    With a PostgreSQL `engine` the NOTIFY wakes it for every producer, this process's too; otherwise
    the commits of this process do. With `send_group`, standard notices go `group_size` to a job.
    """

    def pass_() -> None:
        on_pass()  # the liveness beat
        dispatch_due(sessions, send, lease=lease, send_group=send_group, group_size=group_size)

    if engine is not None and engine.dialect.name == "postgresql":
        _run_listening(stop, engine, pass_, poll_seconds=poll_seconds, backoff_max=backoff_max)
    else:
        _run_local(stop, pass_, poll_seconds=poll_seconds, backoff_max=backoff_max)
