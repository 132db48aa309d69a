"""`booking worker batch-publisher`: the event outbox -> Kafka, the notification outbox -> Dramatiq.

The process runs this module's relay of the event outbox and the one notice dispatcher
(booking_workers.dispatch), which hands the notices producers wrote to the Dramatiq broker.

The relay is two loops, each with its own producer: one for the SVIP result topics, one for every other
topic, so a routed SVIP result never waits for a pass of a lab batch's standard events, and each topic
still has one publisher (`relay_once(topics=...)`). One pass claims a batch of unpublished rows in id
order (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several relays never publish the same row at once),
produces each to its topic keyed by the aggregate id (one booking's events share a partition and keep
their order), waits for the broker's acks (`acks=all`, idempotent producer) and marks the acknowledged
rows published in the same transaction. Rows that were not acknowledged stay unpublished with their
error and attempt count: a Kafka outage only delays events, and consumers drop the rare republished
duplicate by event id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from booking_core.backoff import backoff_delay
from booking_core.db.models import OutboxMessage, utcnow
from booking_core.db.session import first_then_rest
from booking_core.domain.patients import Tier
from booking_core.health import Liveness
from booking_core.outbox import encode_payload
from booking_core.topology import CONSUMERS
from booking_workers.settings import WorkerSettings

log = logging.getLogger(__name__)

EVENT_ID_HEADER = "event-id"
EVENT_TYPE_HEADER = "event-type"
# The topics of the SVIP tiers' result consumers (outbox rows carry the unprefixed topic).
PRIORITY_TOPICS = tuple(c.topic for c in CONSUMERS.values() if c.tier not in (None, Tier.STANDARD.value))
# The priority loop's wait between idle looks: what a routed SVIP result waits at most for its pass.
PRIORITY_IDLE_SECONDS = 0.02


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer the relay uses."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


# Which rows a relay loop publishes: every topic (SVIP result topics first), only the SVIP result topics
# (the priority loop), or every other topic (the main loop beside it). Each topic has one loop, so its
# order (and so each aggregate key's) is kept.
EVERY, PRIORITY, REST = "every", "priority", "rest"


def relay_once(
    sessions: sessionmaker[Session],
    producer: ProducerLike,
    *,
    batch_size: int = 500,
    flush_timeout: float = 30.0,
    topic_name: Callable[[str], str] = lambda t: t,
    topics: str = EVERY,
) -> tuple[int, int]:
    """Publish one batch of `topics` (EVERY, PRIORITY or REST); returns (published, failed)."""
    with sessions() as session:
        stmt = select(OutboxMessage).where(OutboxMessage.published_at.is_(None)).order_by(OutboxMessage.id)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        # SVIP result topics first, and alone: a routed SVIP1 result never waits behind a lab batch's
        # standard events, nor for their acks in the flush. Order is kept within a topic, and so per
        # aggregate key (Kafka orders per partition).
        priority = OutboxMessage.topic.in_(PRIORITY_TOPICS)
        if topics == EVERY:
            rows = first_then_rest(session, stmt, priority, batch_size, fill=False)
        else:
            rows = list(
                session.scalars(stmt.where(priority if topics == PRIORITY else ~priority).limit(batch_size))
            )
        if not rows:
            session.rollback()
            return 0, 0
        acked: set[int] = set()
        errors: dict[int, str] = {}

        def on_delivery(row_id: int) -> Callable[[Any, Any], None]:
            def cb(err: Any, _msg: Any) -> None:
                if err is None:
                    acked.add(row_id)
                else:
                    errors[row_id] = str(err.name() if hasattr(err, "name") else err)[:500]

            return cb

        for row in rows:
            headers = [(k, str(v).encode()) for k, v in (row.headers or {}).items()]
            headers += [
                (EVENT_ID_HEADER, row.event_id.encode()),
                (EVENT_TYPE_HEADER, row.event_type.encode()),
            ]
            while True:
                try:
                    producer.produce(
                        topic_name(row.topic),
                        value=encode_payload(row.payload),
                        key=row.key.encode(),
                        headers=headers,
                        on_delivery=on_delivery(row.id),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)  # the local queue is full: let deliveries drain
        producer.flush(flush_timeout)
        now = utcnow()
        if acked:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(acked))
                .values(published_at=now, attempts=OutboxMessage.attempts + 1, last_error=None)
            )
        failed = [r for r in rows if r.id not in acked]
        for row in failed:
            row.attempts += 1
            row.last_error = errors.get(row.id, "not acknowledged before the flush timeout")
        session.commit()
    if failed:
        log.warning(
            "outbox rows not published, will retry",
            extra={
                "component": "relay",
                "count": len(failed),
                "reason": next(iter(errors.values()), "timeout"),
            },
        )
    return len(acked), len(failed)


def run_relay(
    stop: threading.Event,
    sessions: sessionmaker[Session],
    producer: ProducerLike,
    *,
    batch_size: int = 500,
    # An idle pass is one index-only probe of the unpublished rows (a partial index), so polling often
    # costs little, and every routed result waits for the next pass: 0.2 s was the largest share of an
    # SVIP1 result's way to the patient in the bench (issue 15).
    idle_seconds: float = 0.05,
    backoff_max: float = 30.0,
    flush_timeout: float = 30.0,
    topic_name: Callable[[str], str] = lambda t: t,
    on_pass: Callable[[], None] = lambda: None,
    topics: str = EVERY,
) -> None:
    """Relay until `stop` is set: back to back while busy, short sleeps when idle, backoff on errors."""
    failures = 0
    while not stop.is_set():
        on_pass()  # the liveness beat: a pass started (a hung one stops beating)
        try:
            published, failed = relay_once(
                sessions,
                producer,
                batch_size=batch_size,
                flush_timeout=flush_timeout,
                topic_name=topic_name,
                topics=topics,
            )
        except Exception as exc:  # database down: keep the process, retry later
            published, failed = 0, 1
            log.warning("relay pass failed", extra={"component": "relay", "reason": type(exc).__name__})
        if failed:
            failures += 1
            stop.wait(backoff_delay(failures, base=1.0, cap=backoff_max))
        else:
            failures = 0
            if published < batch_size:
                stop.wait(idle_seconds)
    producer.flush(10)


def _beat(liveness: Liveness | None, source: str) -> Callable[[], None]:
    return (lambda: liveness.beat(source)) if liveness is not None else (lambda: None)


def start_dispatcher(
    settings: WorkerSettings, stop: threading.Event, liveness: Liveness | None = None
) -> threading.Thread | None:
    """The notice dispatcher in a thread, on the broker from settings; None without Redis.

    Without Redis the broker would be this process's in-memory one, which no worker reads: `booking run`
    runs the dispatcher next to its in-process workers instead (booking_workers.embedded).
    """
    from datetime import timedelta

    from booking_core.db.session import get_engine, get_session_factory
    from booking_workers.broker import send_notice, send_notices, setup_broker
    from booking_workers.dispatch import run_dispatcher

    if settings.redis_url is None:
        log.info(
            "no Redis configured: notices are dispatched by `booking run`", extra={"component": "dispatch"}
        )
        return None
    setup_broker(settings)
    thread = threading.Thread(
        target=run_dispatcher,
        args=(stop, get_session_factory(settings.database_url), send_notice),
        kwargs={
            "engine": get_engine(settings.database_url),
            "poll_seconds": settings.notice_poll_seconds,
            "lease": timedelta(seconds=settings.notice_redispatch_seconds),
            "on_pass": _beat(liveness, "notices"),
            "send_group": send_notices,
            "group_size": settings.notice_group_size,
        },
        name="notice-dispatcher",
        daemon=True,
    )
    thread.start()
    log.info("notice dispatcher started", extra={"component": "dispatch"})
    return thread


def main(settings: WorkerSettings, stop: threading.Event, liveness: Liveness | None = None) -> int:
    """Run the relay and the notice dispatcher until `stop` is set (logging, telemetry: the caller's)."""
    from booking_core.db.session import get_session_factory
    from booking_core.kafka import make_producer, topic_name

    dispatcher = start_dispatcher(settings, stop, liveness)
    if settings.embedded:
        log.info(
            "no Kafka configured: the embedded transport reads the outbox directly",
            extra={"component": "relay"},
        )
        while True:  # nothing to relay; stay visibly alive
            if liveness is not None:
                liveness.beat("relay")
            if stop.wait(1.0):
                break
    else:
        producer = make_producer(settings)
        log.info("relay started", extra={"component": "relay"})
        started = time.monotonic()
        sessions = get_session_factory(settings.database_url)
        # The SVIP result topics have a loop (and a producer) of their own: a routed SVIP1 result waited
        # for the main loop's pass in progress, a lab batch's 500 standard events and their acks (0.3-0.5
        # s of issue 15's bench under load). Its idle look reads an index of unpublished rows by topic.
        priority = threading.Thread(
            target=run_relay,
            args=(stop, sessions, make_producer(settings)),
            kwargs={
                "batch_size": settings.outbox_batch_size,
                "idle_seconds": PRIORITY_IDLE_SECONDS,
                "topic_name": lambda t: topic_name(settings, t),
                "on_pass": _beat(liveness, "relay-priority"),
                "topics": PRIORITY,
            },
            name="relay-priority",
            daemon=True,
        )
        priority.start()
        run_relay(
            stop,
            sessions,
            producer,
            batch_size=settings.outbox_batch_size,
            topic_name=lambda t: topic_name(settings, t),
            on_pass=_beat(liveness, "relay"),
            topics=REST,
        )
        priority.join(timeout=10)
        log.info(
            "relay stopped",
            extra={"component": "relay", "duration_ms": int((time.monotonic() - started) * 1000)},
        )
    if dispatcher is not None:
        dispatcher.join(timeout=10)
    return 0
