"""The embedded event transport of `booking run`: the outbox table read as a log, per-group offsets.

The same handlers and the same poll loop run as on Kafka; an outbox row is a record (offset = row id,
one partition per topic) and each consumer group keeps its position in `consumer_offsets`. Reading by
id is safe here because SQLite commits one writer at a time, so ids become visible in order.

Once every consumer group that reads a topic has passed a row, the row is marked published
(`published_at`), as the Kafka relay marks what it has delivered, so the cron's outbox cleanup removes
it after the retention like any other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from booking_consumers.runtime import Consumer, Record
from booking_core.db.models import OutboxMessage, new_id, utcnow
from booking_core.db.models_events import ConsumerOffset
from booking_core.outbox import encode_payload
from booking_core.topology import CONSUMERS

log = logging.getLogger(__name__)


def topic_readers(prefix: str) -> dict[str, list[str]]:
    """Topic -> the consumer groups that read it (booking_core.topology), for marking rows published."""
    readers: dict[str, list[str]] = {}
    for spec in CONSUMERS.values():
        readers.setdefault(spec.topic, []).append(spec.group_for(prefix))
    return readers


class OutboxTransport:
    """Transport over the outbox table for one consumer group."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        group: str,
        topics: Sequence[str],
        *,
        wake: threading.Event | None = None,
        readers: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.group = group
        self.topics = list(topics)
        self.wake = wake or threading.Event()
        # Every group reading each of our topics (ours included): a row is published once all passed it.
        self.readers = {t: sorted({group, *(readers or {}).get(t, ())}) for t in self.topics}
        self._published: dict[str, int] = {}
        with sessions() as session:
            stored = {
                o.topic: o.last_id
                for o in session.scalars(select(ConsumerOffset).where(ConsumerOffset.group_id == group))
            }
        self.positions = {t: stored.get(t, 0) for t in self.topics}
        self._done: dict[str, int] = {}

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        """Outbox rows of our topics after our positions, in id order."""
        records = self._read(max_records)
        if not records and timeout > 0:
            self.wake.wait(timeout)
            self.wake.clear()
            records = self._read(max_records)
        return records

    def _read(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        with self.sessions() as session:
            for topic in self.topics:
                rows = session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.topic == topic, OutboxMessage.id > self.positions[topic])
                    .order_by(OutboxMessage.id)
                    .limit(max_records - len(out))
                )
                for row in rows:
                    out.append(
                        Record(
                            topic=topic,
                            partition=0,
                            offset=row.id,
                            key=row.key.encode(),
                            value=encode_payload(row.payload),
                            headers=dict(row.headers or {}),
                        )
                    )
                if len(out) >= max_records:
                    break
        return out

    def done(self, record: Record) -> None:
        """Advance this group's position past the record (records not done are read again)."""
        self._done[record.topic] = record.offset
        self.positions[record.topic] = record.offset

    def commit(self) -> None:
        """Write the positions of finished records to consumer_offsets; mark rows all readers passed."""
        if not self._done:
            return
        with self.sessions() as session:
            now = utcnow()
            for topic, last_id in self._done.items():
                values = {"group_id": self.group, "topic": topic, "last_id": last_id, "updated_at": now}
                if session.get_bind().dialect.name == "postgresql":
                    stmt: Any = pg_insert(ConsumerOffset).values(**values)
                else:
                    stmt = sqlite.insert(ConsumerOffset).values(**values)
                session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["group_id", "topic"],
                        set_={"last_id": last_id, "updated_at": now},
                    )
                )
                self._mark_published(session, topic, now)
            session.commit()
        self._done.clear()

    def _mark_published(self, session: Session, topic: str, now: datetime) -> None:
        groups = self.readers[topic]
        passed, count = session.execute(
            select(func.min(ConsumerOffset.last_id), func.count()).where(
                ConsumerOffset.topic == topic, ConsumerOffset.group_id.in_(groups)
            )
        ).one()
        # A reader that has not committed yet has no row: it still needs every row of the topic.
        if count < len(groups) or not passed or passed <= self._published.get(topic, 0):
            return
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.topic == topic,
                OutboxMessage.published_at.is_(None),
                OutboxMessage.id > self._published.get(topic, 0),
                OutboxMessage.id <= passed,
            )
            .values(published_at=now)
            .execution_options(synchronize_session=False)
        )
        self._published[topic] = passed

    def dead_letter(self, record: Record, headers: Mapping[str, str]) -> None:
        """Nothing to publish: the dead_letters row is the record, the outbox row keeps the bytes."""

    def lag(self) -> Mapping[int, int]:
        """Rows after this group's position."""
        with self.sessions() as session:
            total = 0
            for topic in self.topics:
                total += (
                    session.scalar(
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(OutboxMessage.topic == topic, OutboxMessage.id > self.positions[topic])
                    )
                    or 0
                )
        return {0: total}

    def close(self) -> None:
        """Commit what is finished."""
        self.commit()


def inject(
    session: Session, topic: str, key: str, value: str | dict[str, Any], event_type: str = "raw"
) -> None:
    """Put an external system's message (an HL7 text, a customer event) on the embedded log, for demos."""
    session.add(
        OutboxMessage(
            event_id=new_id(),
            event_type=event_type,
            topic=topic,
            key=key,
            payload=value,
            headers={},
            created_at=utcnow(),
        )
    )


def start(stop_event: threading.Event, database_url: str | None = None, *, idle_seconds: float = 0.5) -> None:
    """Run every consumer over the embedded transport until `stop_event` is set (blocks; use a thread).

    One thread takes turns over the nine consumers, which keeps SQLite to one writer at a time.
    """
    from booking_consumers.handlers.registry import definition
    from booking_consumers.settings import get_consumer_settings
    from booking_core.db.session import get_session_factory

    settings = get_consumer_settings()
    sessions = get_session_factory(database_url or settings.database_url)
    consumers = [
        Consumer(
            definition(name, settings),  # lis-testresult: the configured zones and identifiers
            OutboxTransport(
                sessions,
                spec.group_for(settings.kafka_topic_prefix),
                [spec.topic],
                readers=topic_readers(settings.kafka_topic_prefix),
            ),
            sessions,
            stop=stop_event,
            max_batch=settings.max_batch,
            poll_timeout=0,
            backoff_max=min(settings.retry_backoff_max_seconds, 5.0),
            lag_interval=60.0,
        )
        for name, spec in CONSUMERS.items()
    ]
    log.info("embedded consumers started", extra={"component": "consumer", "count": len(consumers)})
    try:
        while not stop_event.is_set():
            busy = False
            for consumer in consumers:
                if stop_event.is_set():
                    break
                try:
                    busy = consumer.run_batch() > 0 or busy
                except Exception:
                    log.exception(
                        "embedded consumer pass failed",
                        extra={"component": "consumer", "group": consumer.name},
                    )
            if not busy:
                stop_event.wait(idle_seconds)
    finally:
        for consumer in consumers:
            consumer.transport.commit()
        log.info("embedded consumers stopped", extra={"component": "consumer"})
