"""The one poll loop every consumer runs (transports: kafka.py, and embedded.py for `booking run`).

Per poll batch: decode every record into its event model, then apply the records in ONE database
transaction with a SAVEPOINT each: claim the record's key in `processed_messages` (a duplicate stops
there), run the plain handler, release the savepoint. A record that cannot be decoded or that its handler
refuses (InvalidMessageError) rolls back only its own savepoint and is dead-lettered with the reason (a
`dead_letters` row in the same transaction, the original bytes on `<topic>.dlq`). The transaction
commits once (the notices it owes included), and only then are its records marked done, so
their offsets are stored and committed. A transient failure (database, Kafka or Redis down) rolls the
whole transaction back and retries it with backoff: nothing is skipped. On stop (SIGTERM) the current
batch is finished, stored offsets are committed and the transport is closed.

A transaction holds at most MAX_SAVEPOINTS records; a larger poll batch commits in several. PostgreSQL
caches 64 subtransaction ids per backend (PGPROC_MAX_CACHED_SUBXIDS); a transaction with more released
savepoints that wrote overflows it, and while it stays open every snapshot in the cluster pays
pg_subtrans lookups. 64 records per COMMIT already takes the commit off the per-record path.

Notices a handler owes (a confirmation, "your results are ready") are rows of the notification outbox
written in the record's savepoint (booking_core.db.notify_outbox), so they commit or roll back with
the change; that COMMIT wakes the one notice dispatcher (booking_workers.dispatch), which hands them
to the Dramatiq broker, so a consumer never talks to the broker. DLQ records go out just before the
COMMIT (`dead_letters` dedupes per source position, the DLQ topic is at least once).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, cast

from opentelemetry import trace
from sqlalchemy import Table, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from booking_consumers import metrics
from booking_consumers.errors import InvalidMessageError, TransientError
from booking_core.backoff import backoff_delay
from booking_core.db.models import ProcessedMessage, utcnow
from booking_core.db.models_events import DeadLetter
from booking_core.db.notify_outbox import add_notice
from booking_core.db.session import begin_write, insert_ignore
from booking_core.domain.lifecycle import NoticeIntent
from booking_core.domain.notifications import NotificationKind
from booking_core.health import Liveness
from booking_core.telemetry import extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("booking_consumers")

E = TypeVar("E")

MAX_KEY_LENGTH = 255
# Unexpected handler errors (bugs, constraint surprises) are retried this often, then dead-lettered,
# so one poison message cannot stop a partition forever. Connectivity errors retry without limit.
MAX_UNEXPECTED_ATTEMPTS = 5
# Records per transaction (one savepoint each); see the module docstring.
MAX_SAVEPOINTS = 64
# Records per transaction for a batch handler (no savepoints): a whole poll batch, bounded.
MAX_BATCH_RECORDS = 1000


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


@dataclass
class Effects:
    """What a handler asks for besides its direct writes; `cause` is the record's idempotency key."""

    consumer: str
    session: Session | None = None
    cause: str = ""
    notifications: list[NoticeIntent] = field(default_factory=list)

    def notify(
        self,
        *,
        patient_id: str,
        kind: NotificationKind,
        ref_id: str,
        tier: str = "standard",
        urgent: bool = False,
    ) -> None:
        """Owe the patient a notice: a notification-outbox row in the record's transaction."""
        notice = NoticeIntent(kind, patient_id, str(ref_id), urgent)
        self.notifications.append(notice)
        if self.session is not None:
            add_notice(self.session, notice, cause=self.cause, now=utcnow(), tier=tier)


@dataclass(frozen=True)
class ConsumerDef(Generic[E]):
    """One consumer: how to decode its records, its idempotency key and its plain handler."""

    name: str
    decode: Callable[[Record], E]
    handle: Callable[[Session, E, Effects], None]
    message_key: Callable[[E, Record], str]
    # Called once per transaction, before the savepoints, with the events about to be handled: load
    # what they share in a few queries (read-only caches in `session.info`) instead of one per record.
    prepare: Callable[[Session, Sequence[E]], None] | None = None
    # The event types (the `event-type` header) this consumer acts on; others on its topic are passed
    # over without a transaction, e.g. the events a consumer raises itself. None: every record.
    accepts: frozenset[str] | None = None
    # Instead of `handle` in a savepoint per record: apply every event of the transaction at once
    # (multi-row statements, one dedupe query; see `claim_many`). Returns one outcome per event:
    # "processed", "duplicate", or an InvalidMessageError to dead-letter it, for which it must have
    # written nothing. Such handlers queue no notifications.
    handle_batch: Callable[[Session, Sequence[tuple[E, str]]], list[str | InvalidMessageError]] | None = None


class StopRequestedError(Exception):
    """Raised inside the loop when a stop is requested while waiting to retry."""


class _RecordFailedError(Exception):
    """A record's handler (or its notification) failed unexpectedly; `index` names it in the batch."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(type(cause).__name__)
        self.index = index
        self.cause = cause


@dataclass
class _Item:
    """A polled record and what decoding made of it: an event and its key, or a reason to refuse it."""

    record: Record
    event: Any = None
    key: str = ""
    refusal: tuple[str, str] | None = None


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
    # Redis down (a handler that talks to it): retry the whole batch.
    return type(exc).__module__.startswith("redis") and "Connection" in type(exc).__name__


def _begin(session: Session) -> None:
    """Open the batch's transaction; on SQLite explicitly, so that the savepoints nest inside it."""
    # pysqlite would begin at the first write; a SAVEPOINT before that starts SQLite's own transaction,
    # and its RELEASE commits: every record would commit on its own.
    begin_write(session)


def _claim(session: Session, consumer: str, key: str) -> bool:
    """Insert the processed-message key; False if this or another transaction already has it."""
    stmt = insert_ignore(session, ProcessedMessage).values(consumer=consumer, message_key=key)
    # RETURNING, not rowcount: drivers report -1 for some INSERT forms, which would read as "claimed".
    return session.execute(stmt.returning(ProcessedMessage.id)).first() is not None


def claim_many(session: Session, consumer: str, keys: Sequence[str]) -> set[str]:
    """Insert these processed-message keys in one statement; returns those not already claimed."""
    if not keys:
        return set()
    # Sorted: two transactions claiming overlapping keys (lis-testresult's main group and its priority
    # lane) take the unique index's locks in one order, so they wait for each other, never deadlock.
    unique = sorted(set(keys))
    if session.get_bind().dialect.name == "postgresql":
        # An array parameter: one short statement whatever the batch size.
        stmt = text(
            "INSERT INTO processed_messages (consumer, message_key, processed_at) "
            "SELECT :consumer, k, now() FROM unnest(CAST(:keys AS varchar[])) AS k "
            "ON CONFLICT DO NOTHING RETURNING message_key"
        )
        return set(session.execute(stmt, {"consumer": consumer, "keys": unique}).scalars())
    table = cast(Table, ProcessedMessage.__table__)
    rows = [{"consumer": consumer, "message_key": k, "processed_at": datetime.now(UTC)} for k in unique]
    returning = insert_ignore(session, table).values(rows).returning(table.c.message_key)
    return set(session.execute(returning).scalars())


def _chunks(records: Sequence[Record], size: int) -> list[Sequence[Record]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


class Consumer(Generic[E]):
    """Runs one ConsumerDef over one Transport until stopped."""

    def __init__(
        self,
        definition: ConsumerDef[E],
        transport: Transport,
        session_factory: sessionmaker[Session],
        *,
        stop: threading.Event | None = None,
        max_batch: int = 100,
        poll_timeout: float = 1.0,
        backoff_max: float = 30.0,
        lag_interval: float = 15.0,
        liveness: Liveness | None = None,
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self.transport = transport
        self.sessions = session_factory
        self.stop = stop or threading.Event()
        self.max_batch = max_batch
        self.poll_timeout = poll_timeout
        self.backoff_max = backoff_max
        self.lag_interval = lag_interval
        self._next_lag = 0.0
        self.liveness = liveness
        self._per_transaction = MAX_BATCH_RECORDS if definition.handle_batch else MAX_SAVEPOINTS

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
        """One poll and its records; returns how many records were finished (committed and done)."""
        records = self.transport.poll(self.max_batch, self.poll_timeout)
        self._beat()
        finished = 0
        try:
            for chunk in _chunks(records, self._per_transaction):
                self.process_batch(chunk)
                # Offsets only after the COMMIT of every record up to here.
                for record in chunk:
                    self.transport.done(record)
                finished += len(chunk)
        except StopRequestedError:
            pass  # the rest of the batch stays unstored: redelivered after restart
        if finished:
            self.transport.commit()
            self._beat()
        self._report_lag()
        return finished

    def _beat(self) -> None:
        # Progress for the liveness probe: a poll or commit returned (a wedged loop stops beating).
        if self.liveness is not None:
            self.liveness.beat("poll")

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

    # -- a batch ------------------------------------------------------------------------------------
    def process(self, record: Record) -> str:
        """Decode and apply one record in its own transaction; returns its outcome."""
        return self.process_batch([record])[0]

    def process_batch(self, records: Sequence[Record]) -> list[str]:
        """Decode and apply records, MAX_SAVEPOINTS per transaction; processed, duplicate or dead_lettered.

        Raises StopRequestedError when a stop is requested while waiting to retry; the transaction being
        retried is then not committed.
        """
        wanted = [r for r in records if self._wanted(r)]
        items = [self._decode(r) for r in wanted]
        done: list[str] = []
        step = self._per_transaction
        for start in range(0, len(items), step):
            done += self._run(items[start : start + step])
        by_record = dict(zip((id(r) for r in wanted), done, strict=True))
        return [by_record.get(id(r), "passed_over") for r in records]

    def _wanted(self, record: Record) -> bool:
        accepts = self.definition.accepts
        if accepts is None:
            return True
        event_type = dict(record.headers).get("event-type")
        # No header (a hand-made message): decode it, and refuse it there if it is not ours.
        return event_type is None or event_type in accepts

    def _decode(self, record: Record) -> _Item:
        metrics.CONSUMED.labels(self.name).inc()
        try:
            event = self.definition.decode(record)
            key = _fit_key(self.definition.message_key(event, record))
        except InvalidMessageError as exc:
            return _Item(record, refusal=(exc.reason, exc.detail))
        except Exception as exc:  # a decoder bug must not crash-loop the consumer
            return _Item(record, refusal=("undecodable", type(exc).__name__))
        return _Item(record, event, key)

    def _run(self, items: Sequence[_Item]) -> list[str]:
        """Apply `items` in one transaction until it commits: retry transient failures, isolate poison."""
        poisoned: dict[int, str] = {}
        failures: dict[int, int] = {}
        unattributed = 0
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(items, poisoned)
            except _RecordFailedError as failed:
                n = failures[failed.index] = failures.get(failed.index, 0) + 1
                record = items[failed.index].record
                if n >= MAX_UNEXPECTED_ATTEMPTS:
                    log.error(
                        "handler failed, dead-lettering",
                        exc_info=failed.cause,
                        extra={"component": "consumer", "group": self.name, **_where(record)},
                    )
                    poisoned[failed.index] = type(failed.cause).__name__
                    continue
                self._wait_retry(_where(record), failed.cause, n)
            except Exception as exc:
                if not _transient(exc):
                    # Not pinned to one record (the COMMIT itself failed, say): after bounded attempts,
                    # one transaction per record finds the culprit and dead-letters it alone.
                    unattributed += 1
                    if unattributed >= MAX_UNEXPECTED_ATTEMPTS:
                        if len(items) > 1:
                            return [o for item in items for o in self._run([item])]
                        poisoned[0] = type(exc).__name__
                        continue
                self._wait_retry({**_where(items[0].record), "count": len(items)}, exc, attempt)

    def _attempt(self, items: Sequence[_Item], poisoned: Mapping[int, str]) -> list[str]:
        """One transaction over `items`: a savepoint per record, DLQ and notifications, one COMMIT."""
        if self.definition.handle_batch is not None:
            return self._attempt_batch(items, poisoned)
        outcomes: list[str] = []
        seconds: list[float] = []
        refused: list[tuple[Record, str, str]] = []
        with self.sessions() as session:
            try:
                _begin(session)
                if self.definition.prepare is not None:
                    events = [
                        it.event for i, it in enumerate(items) if it.refusal is None and i not in poisoned
                    ]
                    self.definition.prepare(session, events)
                for index, item in enumerate(items):
                    refusal = item.refusal
                    if refusal is None and index in poisoned:
                        refusal = ("handler_error", poisoned[index])
                    if refusal is None:
                        start = time.perf_counter()
                        try:
                            effects = self._apply(session, index, item)
                        except InvalidMessageError as exc:
                            refusal = (exc.reason, exc.detail)
                        else:
                            seconds.append(time.perf_counter() - start)
                            if effects is None:
                                outcomes.append("duplicate")
                            else:
                                outcomes.append("processed")
                            continue
                    refused.append((item.record, refusal[0][:64], refusal[1][:255]))
                    outcomes.append("dead_lettered")
                for record, reason, detail in refused:
                    self._record_dead_letter(session, record, reason, detail)
                for record, reason, detail in refused:
                    self.transport.dead_letter(record, self._dlq_headers(record, reason, detail))
                session.commit()
            except BaseException:
                session.rollback()
                raise
        # Counted once, after the COMMIT: a retried batch is not counted twice.
        for outcome in outcomes:
            if outcome == "processed":
                metrics.PROCESSED.labels(self.name).inc()
            elif outcome == "duplicate":
                metrics.DUPLICATES.labels(self.name).inc()
        for s in seconds:
            metrics.PROCESSING_SECONDS.labels(self.name).observe(s)
        for record, reason, _detail in refused:
            metrics.DEAD_LETTERED.labels(self.name, reason).inc()
            log.warning(
                "message dead-lettered",
                extra={"component": "consumer", "group": self.name, "reason": reason, **_where(record)},
            )
        return outcomes

    def _attempt_batch(self, items: Sequence[_Item], poisoned: Mapping[int, str]) -> list[str]:
        """One transaction over `items` through the definition's `handle_batch`, DLQ, one COMMIT."""
        assert self.definition.handle_batch is not None
        outcomes: list[str] = ["dead_lettered"] * len(items)
        refused: list[tuple[Record, str, str]] = []
        live = [i for i, it in enumerate(items) if it.refusal is None and i not in poisoned]
        start = time.perf_counter()
        with (
            self.sessions() as session,
            tracer.start_as_current_span(
                f"{items[0].record.topic} process batch",
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": items[0].record.topic,
                    "messaging.consumer.group.name": self.name,
                    "messaging.batch.message_count": len(items),
                },
            ),
        ):
            try:
                _begin(session)
                results = self.definition.handle_batch(
                    session, [(items[i].event, items[i].key) for i in live]
                )
                for i, result in zip(live, results, strict=True):
                    if isinstance(result, InvalidMessageError):
                        refused.append((items[i].record, result.reason[:64], result.detail[:255]))
                    else:
                        outcomes[i] = result
                for i, it in enumerate(items):
                    refusal = it.refusal or (("handler_error", poisoned[i]) if i in poisoned else None)
                    if refusal is not None:
                        refused.append((it.record, refusal[0][:64], refusal[1][:255]))
                for record, reason, detail in refused:
                    self._record_dead_letter(session, record, reason, detail)
                for record, reason, detail in refused:
                    self.transport.dead_letter(record, self._dlq_headers(record, reason, detail))
                session.commit()
            except BaseException:
                session.rollback()
                raise
        seconds = (time.perf_counter() - start) / max(1, len(live))
        for outcome in outcomes:
            if outcome == "processed":
                metrics.PROCESSED.labels(self.name).inc()
                metrics.PROCESSING_SECONDS.labels(self.name).observe(seconds)
            elif outcome == "duplicate":
                metrics.DUPLICATES.labels(self.name).inc()
        for record, reason, _detail in refused:
            metrics.DEAD_LETTERED.labels(self.name, reason).inc()
            log.warning(
                "message dead-lettered",
                extra={"component": "consumer", "group": self.name, "reason": reason, **_where(record)},
            )
        return outcomes

    def _apply(self, session: Session, index: int, item: _Item) -> Effects | None:
        """Claim and handle one record inside its own savepoint; None for a duplicate."""
        record = item.record
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
            effects: Effects | None = None
            try:
                # Leaving the block flushes and releases the savepoint; an exception rolls back only it.
                with session.begin_nested():
                    if _claim(session, self.name, item.key):
                        effects = Effects(self.name, session=session, cause=item.key)
                        self.definition.handle(session, item.event, effects)
            except InvalidMessageError:
                span.set_attribute("booking.outcome", "dead_lettered")
                raise
            except Exception as exc:
                if _transient(exc):
                    raise
                raise _RecordFailedError(index, exc) from exc
            span.set_attribute("booking.outcome", "processed" if effects is not None else "duplicate")
            return effects

    def _wait_retry(self, where: Mapping[str, Any], exc: BaseException, attempt: int) -> None:
        metrics.RETRIES.labels(self.name).inc()
        delay = backoff_delay(attempt, base=0.2, cap=self.backoff_max)
        log.warning(
            "transient failure, retrying the batch",
            extra={
                "component": "consumer",
                "group": self.name,
                "attempt": attempt,
                "reason": type(exc).__name__,
                "duration_ms": int(delay * 1000),
                **where,
            },
        )
        self._beat()  # retrying a transient failure is progress: a restart would not help it
        if self.stop.wait(delay):
            raise StopRequestedError

    def _dlq_headers(self, record: Record, reason: str, detail: str) -> dict[str, str]:
        return {
            "x-dlq-reason": reason,
            "x-dlq-detail": detail,
            "x-dlq-consumer": self.name,
            "x-dlq-source-topic": record.topic,
            "x-dlq-source-partition": str(record.partition),
            "x-dlq-source-offset": str(record.offset),
            "x-dlq-at": str(int(time.time() * 1000)),
        }

    def _record_dead_letter(self, session: Session, record: Record, reason: str, detail: str) -> None:
        values = {
            "consumer": self.name,
            "topic": record.topic,
            "partition": record.partition,
            "source_offset": record.offset,
            "reason": reason,
            "detail": detail or None,
        }
        session.execute(insert_ignore(session, DeadLetter).values(**values))


def _where(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}
