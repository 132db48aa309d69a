"""`send_notification`: one event to one patient over every channel they allow, each channel once.

Quiet hours hold the noisy channels (email, SMS, push) of a non-urgent message until the patient's
morning; the in-app inbox is silent, so it is written at once. Each channel is claimed, sent and
recorded on its own (see `store`), so a retry after a partial failure only repeats what failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.session import PING_AFTER_IDLE_SECONDS
from booking_core.domain.notifications import Channel
from booking_workers import metrics, observe
from booking_workers.notifications import pgraw, store
from booking_workers.notifications.errors import DeliveryError
from booking_workers.notifications.load import load
from booking_workers.notifications.policy import RetryPolicy
from booking_workers.notifications.quiet_hours import quiet_until, zone
from booking_workers.notifications.templates import EmailContext, EventType, Rendered, render

log = logging.getLogger(__name__)

NOISY = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
REMINDERS = (EventType.REMINDER_24H, EventType.REMINDER_2H)


class Sender(Protocol):
    """A channel adapter: delivers one rendered message or raises a DeliveryError."""

    def send(self, *, to: str | None, rendered: Rendered, notification_id: str) -> None:
        """Deliver or raise."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Notifier:
    """Everything `send_notification` needs, built once per worker process."""

    session_factory: sessionmaker[Session]
    senders: dict[Channel, Sender]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = timedelta(seconds=120)
    portal_url: str = "https://portal.example.org"
    clock: Callable[[], datetime] = _utcnow
    # Reads outside the claims: each statement autocommits, so no BEGIN before it and no ROLLBACK after
    # (two of a notification's round trips to the database, issue 15's profile). A Core connection, not
    # an ORM Session: the job's statements are Core ones and need no identity map, and a Session's
    # begin/execute/commit/close bookkeeping was a quarter of the worker's CPU per email (issue 15).
    reads: Callable[[], AbstractContextManager[Connection]] = field(init=False, repr=False)
    # Claims and attempt records: autocommit on PostgreSQL, where each is one statement (store); a
    # transaction elsewhere (SQLite runs the attempt record as two statements).
    writes: Callable[[], AbstractContextManager[Connection | Session]] = field(init=False, repr=False)
    _held: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        bind = self.session_factory.kw["bind"]
        self.reads = bind.execution_options(isolation_level="AUTOCOMMIT").connect
        self.writes = self.reads if bind.dialect.name == "postgresql" else self.session_factory

    def warm(self, connections: int = 1) -> None:
        """Open `connections` pooled connections (one per worker thread) and ready the job's statements on
        each before the first job needs them.

        Each worker thread keeps a connection of its own (`job_connection`): warming only one left the
        other threads to open theirs and prepare the job's statements inside the first burst after a
        start (7 of 8 connections, with a round trip per statement each: issue 15, seventh pass). They
        go back to the pool, whose size is the thread count, with their statements prepared."""
        held = connections if self.writes is self.reads else 1  # SQLite: the shared engine, one file
        with ExitStack() as stack:
            for _ in range(max(1, held)):
                session = stack.enter_context(self.reads())
                load(session, patient_id="", ref_id="", results=False)
                load(session, patient_id="", ref_id="", results=True)
                pgraw.prepare_all(session)

    @contextmanager
    def job_connection(self) -> Iterator[Connection]:
        """This thread's autocommit connection (PostgreSQL), kept from one job to the next.

        A pool checkout and checkin per job (SQLAlchemy's bookkeeping, psycopg's autocommit set and
        reset) was 5% of the worker's GIL time (issue 15, fifth pass). Held across jobs, it is checked
        as the pool would check it: with a round trip when it idled. A job that fails gives it back
        (invalidated when psycopg broke it), and the next job checks out another.
        """
        held = self._held
        conn: Connection | None = getattr(held, "conn", None)
        if conn is not None and time.monotonic() - held.used_at > PING_AFTER_IDLE_SECONDS:
            try:
                dbapi = conn.connection.dbapi_connection
                if dbapi is None or not conn.dialect.do_ping(dbapi):
                    raise ConnectionError("no pooled connection to ping")
            except Exception:  # any failure: the server dropped it; take another
                held.conn = None
                conn.invalidate()
                conn.close()
                conn = None
        if conn is None:
            conn = held.conn = self.reads().__enter__()
        try:
            with pgraw.invalidating(conn):
                yield conn
        except BaseException:
            held.conn = None
            conn.close()
            raise
        finally:
            held.used_at = time.monotonic()


@dataclass
class Outcome:
    """What happened to a message: held, finished, or some channels to retry after a delay."""

    held_until: datetime | None = None
    retry_in_ms: int | None = None
    results: dict[str, str] = field(default_factory=dict)  # channel -> outcome
    # The notice's outbox row was completed with the last attempt's record (nothing left to settle).
    completed: bool = False


def send_notification(
    n: Notifier,
    *,
    patient_id: str,
    event_type: str,
    ref_id: str,
    urgent: bool = False,
    message_id: str | None = None,
    enqueued_at: datetime | None = None,
    cause: str = "",
    intent_id: int | None = None,
) -> Outcome:
    """Deliver one event to one patient on each allowed channel, at most once per channel.

    `intent_id`: the notice's outbox row, completed in the statement that records the attempt which
    finishes the notice (`Outcome.completed`); the caller settles it otherwise (held, retried, nothing
    sent)."""
    try:
        event = EventType(event_type)
    except ValueError:
        log.warning("unknown notification event", extra={"event_type": event_type, "message_id": message_id})
        return Outcome()
    if n.writes is not n.reads:  # SQLite: the reads' connection goes back before a write transaction
        return _send(n, None, event, patient_id, ref_id, urgent, message_id, enqueued_at, cause, intent_id)
    # PostgreSQL: one pooled connection for the whole job (autocommit: no transaction stays open across
    # the send). A checkout per statement reset and set autocommit on it each time: a sixth of the
    # worker's CPU per email (issue 15, fourth pass). Its statements run on psycopg itself (pgraw), on
    # a connection the thread keeps between jobs.
    with n.job_connection() as conn:
        return _send(n, conn, event, patient_id, ref_id, urgent, message_id, enqueued_at, cause, intent_id)


def _send(
    n: Notifier,
    conn: Connection | None,
    event: EventType,
    patient_id: str,
    ref_id: str,
    urgent: bool,
    message_id: str | None,
    enqueued_at: datetime | None,
    cause: str,
    intent_id: int | None,
) -> Outcome:
    now = n.clock()
    results = event is EventType.RESULTS_AVAILABLE
    # The patient, their choices and the event's subject in one round trip.
    with nullcontext(conn) if conn is not None else n.reads() as reading:
        found = load(reading, patient_id=patient_id, ref_id=ref_id, results=results)
    if found is None or not found.active:
        log.warning("notification for an unknown or inactive patient", extra={"message_id": message_id})
        return Outcome()
    prefs = found.prefs
    ctx = EmailContext(appointment_local=None, clinic_name=None, booking_ref=None, portal_url=n.portal_url)
    if found.booking_id is not None and found.starts_at is not None:
        if event in REMINDERS and found.booking_status != "booked":
            log.info(
                "reminder obsolete", extra={"booking_id": found.booking_id, "status": found.booking_status}
            )
            return Outcome(results={"all": "obsolete"})
        ctx = EmailContext(
            appointment_local=found.starts_at.astimezone(zone(found.time_zone)),
            clinic_name=found.clinic_name,
            booking_ref=found.booking_id[:8].upper(),
            portal_url=n.portal_url,
        )
    addresses = {c: found.addresses[c.value] for c in Channel}
    received = (found.result_received_at, found.result_tier or "standard") if results else None
    held_until = None
    if not (urgent and prefs.urgent_override):
        held_until = quiet_until(now, found.time_zone, prefs.quiet_hours_start, prefs.quiet_hours_end)

    out = Outcome(held_until=held_until)
    delays: list[int] = []
    wanted = prefs.channels  # a property: built once, not per channel
    channels = [
        channel
        for channel in Channel
        if channel in wanted
        and addresses[channel]
        and not (channel in NOISY and held_until is not None)
        # a provider not configured in this deployment
        and (channel is Channel.IN_APP or channel in n.senders)
    ]
    for i, channel in enumerate(channels):
        key = store.DeliveryKey(found.patient_id, event.value, ref_id, channel.value, cause)
        # The last channel's record completes the notice when nothing before it is left to retry and
        # nothing is held: it finishes the notice only if it does not need a retry itself (_deliver).
        last = i == len(channels) - 1 and not delays and held_until is None
        delay, out.completed = _deliver(
            n,
            conn,
            key,
            channel,
            event,
            ctx,
            addresses[channel],
            message_id,
            enqueued_at,
            received,
            intent_id if last else None,
        )
        out.results[channel.value] = "retry" if delay is not None else "done"
        if delay is not None:
            delays.append(delay)
    if delays:
        out.retry_in_ms = max(delays)
    if held_until is not None:
        metrics.NOTIFICATIONS_HELD.inc()
    return out


def _writing(n: Notifier, db: Connection | None) -> AbstractContextManager[Connection | Session]:
    return nullcontext(db) if db is not None else n.writes()


def _deliver(
    n: Notifier,
    db: Connection | None,
    key: store.DeliveryKey,
    channel: Channel,
    event: EventType,
    ctx: EmailContext,
    to: str | None,
    message_id: str | None,
    enqueued_at: datetime | None,
    received: tuple[datetime | None, str] | None = None,
    intent_id: int | None = None,
) -> tuple[int | None, bool]:
    """One channel: claim, send, record. Returns a retry delay in ms when the failure was transient, and
    whether the record completed the outbox row `intent_id` (given when this channel is the notice's
    last; completed unless this attempt is to be retried or was not made).

    `db` is the job's autocommit connection when claims and records run on it (PostgreSQL), else None:
    each then runs in a transaction of its own."""
    with _writing(n, db) as session:
        c = store.claim(session, key, now=n.clock(), lease=n.lease)
    nid = key.notification_id
    if c is None:
        with n.session_factory() as session:
            until = store.in_flight_until(session, key, now=n.clock())
        if until is not None:
            # Another attempt holds it (or died holding it: a crash mid-send). Come back when its lease
            # lapses: then it is sent, or ours to take over. Treating it as done would lose it.
            log.info(
                "in flight elsewhere, retrying later", extra={"message_id": nid, "channel": channel.value}
            )
            return max(1, int((until - n.clock()).total_seconds() * 1000) + 1), False
        metrics.NOTIFICATIONS.labels(channel.value, "duplicate").inc()
        log.info("already delivered or in flight", extra={"message_id": nid, "channel": channel.value})
        return None, False
    rendered = render(event, channel, ctx)
    started = n.clock()
    t0 = time.perf_counter()
    error: DeliveryError | None = None
    try:
        if channel is Channel.IN_APP:
            with _writing(n, db) as session:
                store.write_inbox(session, key=key, title=rendered.subject, body=rendered.body, now=started)
        else:
            n.senders[channel].send(to=to, rendered=rendered, notification_id=nid)
    except DeliveryError as exc:
        error = exc
    finished = started + timedelta(seconds=time.perf_counter() - t0)
    retry_in: int | None = None
    if error is None:
        outcome, status, label = "sent", "sent", "sent"
        if received is not None:
            observe.result_notified(received[0], received[1], key.channel, finished)
        if enqueued_at is not None:
            metrics.NOTIFICATION_LATENCY.labels(channel.value).observe(
                max(0.0, (finished - enqueued_at).total_seconds())
            )
    elif not error.transient:
        outcome, status, label = "permanent_failure", "failed", "permanent_failure"
    elif n.policy.exhausted(c.attempt):
        outcome, status, label = "transient_failure", "failed", "gave_up"
    else:
        outcome, status, label = "transient_failure", "retrying", "transient_failure"
        retry_in = n.policy.backoff_ms(c.attempt, error.retry_after)
        metrics.NOTIFICATION_RETRIES.labels(channel.value).inc()
    error_class = error.error_class if error is not None else None
    complete = intent_id if retry_in is None else None
    with _writing(n, db) as session:
        store.record(
            session,
            c,
            outcome=outcome,
            status=status,
            error_class=error_class,
            started_at=started,
            finished_at=finished,
            message_id=message_id,
            complete_intent=complete,
        )
    metrics.NOTIFICATIONS.labels(channel.value, label).inc()
    log.info(
        "notification attempt",
        extra={
            "message_id": nid,
            "channel": channel.value,
            "event_type": event.value,
            "attempt": c.attempt,
            "outcome": label,
            "reason": error_class,
        },
    )
    return retry_in, complete is not None
