"""The one poll loop every consumer runs, and the Kafka transport (the only confluent_kafka consumer).

Per message: decode into the event model -> in one database transaction claim the message key in
`processed_messages` (a duplicate stops here), run the plain handler, enqueue its notifications, commit
-> only then mark the record done, so its offset is stored and committed with the batch. A message
that cannot be decoded or is refused goes to `<topic>.dlq` with the reason in headers; a transient
failure (database down) is retried with backoff on the same message, never skipped. On stop (SIGTERM)
the current batch is finished, stored offsets are committed and the transport is closed.

Notifications are enqueued after the handler and just before the commit: a crash in between enqueues
again on redelivery, which the notifications worker deduplicates; enqueuing after the commit could
lose the message instead.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import trace
from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from booking_consumers import metrics
from booking_consumers.errors import InvalidMessageError, TransientError
from booking_core.db.models import ProcessedMessage
from booking_core.db.models_events import DeadLetter
from booking_core.telemetry import extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("booking_consumers")

E = TypeVar("E")

MAX_KEY_LENGTH = 255
# Unexpected handler errors (bugs, constraint surprises) are retried this often, then dead-lettered,
# so one poison message cannot stop a partition forever. Connectivity errors retry without limit.
MAX_UNEXPECTED_ATTEMPTS = 5


@dataclass(frozen=True)
class Record:
    """One message as any transport delivers it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp_ms: int | None = None


class Transport(Protocol):
    """Where records come from: Kafka, or the outbox table read as a log (`booking run`)."""

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        """Up to `max_records` records, waiting at most `timeout` seconds for the first."""
        ...

    def done(self, record: Record) -> None:
        """The record's effects are committed: its offset may be stored."""
        ...

    def commit(self) -> None:
        """Commit every stored offset (end of a batch, rebalance, shutdown)."""
        ...

    def dead_letter(self, record: Record, headers: Mapping[str, str]) -> None:
        """Publish the record unchanged to `<topic>.dlq` with the given extra headers."""
        ...

    def lag(self) -> Mapping[int, int]:
        """Messages behind the end of the log, per partition."""
        ...

    def close(self) -> None:
        """Leave the group and release connections."""
        ...


@dataclass(frozen=True)
class Notification:
    """A `send_notification` job for the notifications worker (see docs/events.md for the contract)."""

    patient_id: str
    event_type: str
    ref_id: str
    tier: str = "standard"
    urgent: bool = False


Notifier = Callable[[Notification], None]


@dataclass
class Effects:
    """What a handler asks for besides its database writes; applied by the loop before the commit."""

    consumer: str
    notifications: list[Notification] = field(default_factory=list)

    def notify(
        self, *, patient_id: str, event_type: str, ref_id: str, tier: str = "standard", urgent: bool = False
    ) -> None:
        """Queue a patient notification, enqueued only if the handler's transaction commits."""
        self.notifications.append(Notification(patient_id, event_type, str(ref_id), tier, urgent))


@dataclass(frozen=True)
class ConsumerDef(Generic[E]):
    """One consumer: how to decode its records, its idempotency key and its plain handler."""

    name: str
    decode: Callable[[Record], E]
    handle: Callable[[Session, E, Effects], None]
    message_key: Callable[[E, Record], str]


class StopRequestedError(Exception):
    """Raised inside the loop when a stop is requested while waiting to retry."""


def broker_notifier(n: Notification) -> None:
    """Enqueue on the Dramatiq broker by actor name (booking_core.broker; no import of the workers)."""
    from booking_core.broker import enqueue_notification

    enqueue_notification(
        patient_id=n.patient_id, event_type=n.event_type, ref_id=n.ref_id, tier=n.tier, urgent=n.urgent
    )


def payload_key(record: Record) -> str:
    """A content hash: the idempotency key for messages that carry no id of their own."""
    return "sha256:" + hashlib.sha256(record.value or b"").hexdigest()


def _fit_key(key: str) -> str:
    return key if len(key) <= MAX_KEY_LENGTH else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | OperationalError | DisconnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # Redis (the notification broker) down: the enqueue before commit failed, retry the whole message.
    return type(exc).__module__.startswith("redis") and "Connection" in type(exc).__name__


def _claim(session: Session, consumer: str, key: str) -> bool:
    """Insert the processed-message key; False if another transaction already has it."""
    dialect = session.get_bind().dialect.name
    values = {"consumer": consumer, "message_key": key}
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(ProcessedMessage).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(ProcessedMessage).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        stmt = insert(ProcessedMessage).values(**values)
    # RETURNING, not rowcount: drivers report -1 for some INSERT forms, which would read as "claimed".
    return session.execute(stmt.returning(ProcessedMessage.id)).first() is not None


class Consumer(Generic[E]):
    """Runs one ConsumerDef over one Transport until stopped."""

    def __init__(
        self,
        definition: ConsumerDef[E],
        transport: Transport,
        session_factory: sessionmaker[Session],
        *,
        notifier: Notifier = broker_notifier,
        stop: threading.Event | None = None,
        max_batch: int = 100,
        poll_timeout: float = 1.0,
        backoff_max: float = 30.0,
        lag_interval: float = 15.0,
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self.transport = transport
        self.sessions = session_factory
        self.notifier = notifier
        self.stop = stop or threading.Event()
        self.max_batch = max_batch
        self.poll_timeout = poll_timeout
        self.backoff_max = backoff_max
        self.lag_interval = lag_interval
        self._next_lag = 0.0

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        """Poll, process and commit batches until `stop` is set; then commit and close."""
        log.info("consumer started", extra={"component": "consumer", "group": self.name})
        try:
            while not self.stop.is_set():
                self.run_batch()
        finally:
            try:
                self.transport.commit()
            finally:
                self.transport.close()
                log.info("consumer stopped", extra={"component": "consumer", "group": self.name})

    def run_batch(self) -> int:
        """One poll and its records; returns how many records were finished."""
        records = self.transport.poll(self.max_batch, self.poll_timeout)
        finished = 0
        try:
            for record in records:
                self.process(record)
                self.transport.done(record)
                finished += 1
        except StopRequestedError:
            pass  # the rest of the batch stays unstored: redelivered after restart
        if finished:
            self.transport.commit()
        self._report_lag()
        return finished

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.lag_interval
        try:
            for partition, lag in self.transport.lag().items():
                metrics.LAG.labels(self.name, str(partition)).set(lag)
        except Exception:  # lag is best effort; never stop consuming for it
            log.debug("lag query failed", exc_info=True)

    # -- one record -----------------------------------------------------------------------------
    def process(self, record: Record) -> str:
        """Decode and apply one record; returns processed, duplicate or dead_lettered."""
        metrics.CONSUMED.labels(self.name).inc()
        ctx: Any = extract_context(dict(record.headers))
        with tracer.start_as_current_span(
            f"{record.topic} process",
            context=ctx,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self.name,
                "messaging.kafka.message.offset": record.offset,
                "messaging.destination.partition.id": str(record.partition),
            },
        ) as span:
            outcome = self._process(record)
            span.set_attribute("booking.outcome", outcome)
            return outcome

    def _process(self, record: Record) -> str:
        try:
            event = self.definition.decode(record)
        except InvalidMessageError as exc:
            return self._dead_letter(record, exc.reason, exc.detail)
        except Exception as exc:  # a decoder bug must not crash-loop the consumer
            return self._dead_letter(record, "undecodable", type(exc).__name__)
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                outcome = self._apply(record, event)
            except InvalidMessageError as exc:
                return self._dead_letter(record, exc.reason, exc.detail)
            except Exception as exc:
                if not _transient(exc) and attempt >= MAX_UNEXPECTED_ATTEMPTS:
                    log.error(
                        "handler failed, dead-lettering",
                        exc_info=True,
                        extra={"component": "consumer", "group": self.name, **_where(record)},
                    )
                    return self._dead_letter(record, "handler_error", type(exc).__name__)
                self._wait_retry(record, exc, attempt)
                continue
            metrics.PROCESSING_SECONDS.labels(self.name).observe(time.perf_counter() - start)
            return outcome

    def _apply(self, record: Record, event: E) -> str:
        key = _fit_key(self.definition.message_key(event, record))
        with self.sessions() as session:
            try:
                if not _claim(session, self.name, key):
                    session.rollback()
                    metrics.DUPLICATES.labels(self.name).inc()
                    return "duplicate"
                effects = Effects(self.name)
                self.definition.handle(session, event, effects)
                session.flush()
                for n in effects.notifications:
                    self.notifier(n)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        metrics.PROCESSED.labels(self.name).inc()
        return "processed"

    def _wait_retry(self, record: Record, exc: BaseException, attempt: int) -> None:
        metrics.RETRIES.labels(self.name).inc()
        delay = min(self.backoff_max, 0.2 * 2 ** min(attempt - 1, 10)) * (0.5 + random.random() / 2)
        log.warning(
            "transient failure, retrying the same message",
            extra={
                "component": "consumer",
                "group": self.name,
                "attempt": attempt,
                "reason": type(exc).__name__,
                "duration_ms": int(delay * 1000),
                **_where(record),
            },
        )
        if self.stop.wait(delay):
            raise StopRequestedError

    def _dead_letter(self, record: Record, reason: str, detail: str) -> str:
        reason = reason[:64]
        detail = detail[:255]
        attempt = 0
        while True:
            attempt += 1
            try:
                self._record_dead_letter(record, reason, detail)
                self.transport.dead_letter(
                    record,
                    {
                        "x-dlq-reason": reason,
                        "x-dlq-detail": detail,
                        "x-dlq-consumer": self.name,
                        "x-dlq-source-topic": record.topic,
                        "x-dlq-source-partition": str(record.partition),
                        "x-dlq-source-offset": str(record.offset),
                        "x-dlq-at": str(int(time.time() * 1000)),
                    },
                )
                break
            except Exception as exc:
                self._wait_retry(record, exc, attempt)
        metrics.DEAD_LETTERED.labels(self.name, reason).inc()
        log.warning(
            "message dead-lettered",
            extra={"component": "consumer", "group": self.name, "reason": reason, **_where(record)},
        )
        return "dead_lettered"

    def _record_dead_letter(self, record: Record, reason: str, detail: str) -> None:
        with self.sessions() as session:
            values = {
                "consumer": self.name,
                "topic": record.topic,
                "partition": record.partition,
                "source_offset": record.offset,
                "reason": reason,
                "detail": detail or None,
            }
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":
                stmt: Any = postgresql.insert(DeadLetter).values(**values).on_conflict_do_nothing()
            else:
                stmt = sqlite.insert(DeadLetter).values(**values).on_conflict_do_nothing()
            session.execute(stmt)
            session.commit()


def _where(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


# -- Kafka --------------------------------------------------------------------------------------------


def consumer_config(base: Mapping[str, Any], group: str) -> dict[str, Any]:
    """Consumer settings: offsets stored by the loop only after commit, and committed per batch."""
    conf = dict(base)
    conf.update(
        {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "isolation.level": "read_committed",
            # A long database outage retries one message for a while; do not get evicted for it.
            "max.poll.interval.ms": 900_000,
            "session.timeout.ms": 30_000,
        }
    )
    return conf


class KafkaTransport:
    """Transport over confluent-kafka: store offsets after commit, commit them per batch."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        dlq_producer: Any,
        dlq_topic: Callable[[str], str] = lambda topic: f"{topic}.dlq",
    ) -> None:
        from confluent_kafka import Consumer as KafkaConsumer

        self._consumer = KafkaConsumer(dict(config))
        self._producer = dlq_producer
        self._dlq_topic = dlq_topic
        self._stored: dict[tuple[str, int], int] = {}
        self._consumer.subscribe(list(topics), on_revoke=self._on_revoke)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Commit what is done before the partitions move to another replica, so it does not redo them.
        self.commit()

    def poll(self, max_records: int, timeout: float) -> Sequence[Record]:
        """A batch of records; broker errors are logged and skipped over (librdkafka retries them)."""
        from confluent_kafka import KafkaError, KafkaException

        out: list[Record] = []
        for msg in self._consumer.consume(num_messages=max_records, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("kafka consume error", extra={"component": "consumer", "reason": err.name()})
                continue
            raw_headers: Any = msg.headers() or ()
            pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            headers = {}
            for k, v in pairs:
                if v is not None:
                    headers[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            ts_type, ts = msg.timestamp()
            out.append(
                Record(
                    topic=msg.topic() or "",
                    partition=msg.partition() or 0,
                    offset=msg.offset() or 0,
                    key=msg.key(),
                    value=msg.value(),
                    headers=headers,
                    timestamp_ms=ts if ts_type else None,
                )
            )
        return out

    def done(self, record: Record) -> None:
        """Remember the next offset to commit for the record's partition."""
        self._stored[(record.topic, record.partition)] = record.offset + 1

    def commit(self) -> None:
        """store_offsets for everything done, then a synchronous commit."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        if not self._stored:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._stored.items()]
        self._stored.clear()
        try:
            self._consumer.store_offsets(offsets=offsets)
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args else None
            # Nothing to commit, or partitions already revoked: their records come back to someone.
            if code in (KafkaError._NO_OFFSET, KafkaError._STATE, KafkaError.UNKNOWN_MEMBER_ID):
                log.info("commit skipped", extra={"component": "consumer", "reason": str(code)})
                return
            raise

    def dead_letter(self, record: Record, headers: Mapping[str, str]) -> None:
        """Produce the original bytes and key to `<topic>.dlq`, headers kept, and wait for the ack."""
        all_headers = [(k, v.encode()) for k, v in record.headers.items()]
        all_headers += [(k, v.encode()) for k, v in headers.items()]
        errors: list[Any] = []
        self._producer.produce(
            self._dlq_topic(record.topic),
            value=record.value,
            key=record.key,
            headers=all_headers,
            on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
        )
        remaining = self._producer.flush(30)
        if remaining or errors:
            raise TransientError("dead-letter publish failed")

    def lag(self) -> Mapping[int, int]:
        """High watermark minus position for each assigned partition."""
        out: dict[int, int] = {}
        assignment = self._consumer.assignment()
        if not assignment:
            return out
        for tp in self._consumer.position(assignment):
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=2)
            position = tp.offset if tp.offset >= 0 else _low
            out[tp.partition] = max(0, high - position)
        return out

    def close(self) -> None:
        """Leave the consumer group (a clean rebalance) and flush the DLQ producer."""
        try:
            self._producer.flush(10)
        finally:
            self._consumer.close()
