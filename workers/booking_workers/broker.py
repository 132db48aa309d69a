"""The Dramatiq broker, in the workers only: built once per process, enqueue by actor name, run jobs.

`BOOKING_REDIS_URL` selects Dramatiq's Redis broker; without it (`booking run`) the in-memory
StubBroker is used. Nothing outside booking_workers imports Dramatiq (import-linter holds that):
the API, the consumers and the cron only write notification intents to the outbox in their own
transaction (booking_core.db.notify_outbox), and the one dispatcher (booking_workers.dispatch, run by
the batch-publisher and by `booking run`) hands them to the broker here, by actor name.

A process that runs jobs (`booking worker`, the workers inside `booking run`, tests) also needs the
middleware below: a consumer span per job as a child of the producer's trace context, and the current
message for the actors (their enqueue time and message id). `install` adds it once per broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from booking_core.db.notify_outbox import Notice
from booking_core.domain.notifications import NotificationKind
from booking_core.settings import BookingSettings
from booking_core.telemetry import extract_context, inject_headers
from booking_core.topology import DEFAULT_QUEUE, NOTIFICATION_QUEUES, OUTBOX_QUEUE

log = logging.getLogger(__name__)

SEND_NOTIFICATION = "send_notification"
SEND_NOTIFICATIONS = "send_notifications"
TRACE_OPTION = "trace_context"
ENQUEUED_AT_OPTION = "enqueued_at_ms"
TIERS = tuple(NOTIFICATION_QUEUES)


class BrokerSettings(BaseSettings):
    """Broker tuning shared by every process that talks to the broker (producers and workers)."""

    model_config = SettingsConfigDict(env_prefix="BOOKING_BROKER_", extra="ignore")

    # Every key lives under this Redis prefix; producers and workers must agree on it.
    namespace: str = "pat-booking"
    # A worker silent for this long is dead: its unacked messages go back to their queue.
    heartbeat_timeout_ms: int = Field(default=60_000, ge=500)
    # Out of a million broker commands, how many also run that requeue sweep.
    maintenance_chance: int = Field(default=1_000, ge=0, le=1_000_000)


# Re-entrant: get_broker() may build the broker through setup_broker() while holding it.
_lock = threading.RLock()
_broker: dramatiq.Broker | None = None


def _declare_queues(broker: dramatiq.Broker) -> None:
    # Declared up front so a worker consumes every tier queue even before a message names it.
    for queue in (*NOTIFICATION_QUEUES.values(), DEFAULT_QUEUE, OUTBOX_QUEUE):
        broker.declare_queue(queue)


def build_broker(redis_url: str | None, broker_settings: BrokerSettings | None = None) -> dramatiq.Broker:
    """A new broker: Redis when a URL is given, else the in-memory StubBroker."""
    bs = broker_settings or BrokerSettings()
    broker: dramatiq.Broker
    if redis_url:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=redis_url,
            namespace=bs.namespace,
            heartbeat_timeout=bs.heartbeat_timeout_ms,
            maintenance_chance=bs.maintenance_chance,
        )
    else:
        broker = StubBroker()
    # No job-running middleware here: booking_workers.broker installs it where the actors are declared.
    _declare_queues(broker)
    return broker


def setup_broker(
    settings: BookingSettings | None = None, *, broker: dramatiq.Broker | None = None
) -> dramatiq.Broker:
    """Install the process-wide broker (from settings, or the one given); call before declaring actors."""
    global _broker
    with _lock:
        if broker is None:
            url = (settings or BookingSettings()).redis_url
            broker = build_broker(url)
        dramatiq.set_broker(broker)
        _broker = broker
        log.info("broker ready", extra={"kind": type(broker).__name__})
        return broker


def get_broker() -> dramatiq.Broker:
    """The process-wide broker, set up from the environment on first use."""
    if _broker is None:
        with _lock:  # `booking run` starts several threads that may all enqueue first
            if _broker is None:
                return setup_broker()
    assert _broker is not None
    return _broker


def notification_queue(tier: str) -> str:
    """The Dramatiq queue of a patient tier (unknown tiers fall back to standard)."""
    return NOTIFICATION_QUEUES.get(tier.lower(), NOTIFICATION_QUEUES["standard"])


def enqueue(
    actor_name: str,
    *,
    queue_name: str,
    kwargs: Mapping[str, Any],
    delay_ms: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> dramatiq.Message[Any]:
    """Enqueue a message for an actor by name, with the current trace context in its options."""
    opts: dict[str, Any] = {TRACE_OPTION: inject_headers(), ENQUEUED_AT_OPTION: int(time.time() * 1000)}
    opts.update(options or {})
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=(), kwargs=dict(kwargs), options=opts
    )
    return get_broker().enqueue(message, delay=delay_ms)


def enqueue_notification(
    *,
    patient_id: str | int,
    event_type: NotificationKind,
    ref_id: str | int,
    tier: str = "standard",
    urgent: bool = False,
    delay_ms: int | None = None,
    cause: str | None = None,
    intent_id: int | None = None,
    trace_context: Mapping[str, str] | None = None,
) -> dramatiq.Message[Any]:
    """Queue `send_notification` on the patient's tier queue; duplicates are harmless (deduped on send).

    `cause` (what caused the notice) is part of the delivery's dedupe key; `intent_id` names the
    notification-outbox row the worker completes or postpones (booking_core.db.notify_outbox);
    `trace_context` (W3C headers) parents the job's span, since the causing span has ended by dispatch.
    """
    kwargs: dict[str, Any] = {
        "patient_id": patient_id,
        "event_type": event_type,
        "ref_id": ref_id,
        "urgent": urgent,
    }
    if cause is not None:
        kwargs["cause"] = cause
    if intent_id is not None:
        kwargs["intent_id"] = intent_id
    return enqueue(
        SEND_NOTIFICATION,
        queue_name=notification_queue(tier),
        kwargs=kwargs,
        delay_ms=delay_ms,
        options={TRACE_OPTION: dict(trace_context)} if trace_context else None,
    )


def send_notice(notice: Notice) -> None:
    """The notification outbox's sender: one `send_notification` job per due notice."""
    enqueue_notification(
        patient_id=notice.patient_id,
        event_type=notice.kind,
        ref_id=notice.ref_id,
        tier=notice.tier,
        urgent=notice.urgent,
        cause=notice.cause,
        intent_id=notice.intent_id,
        trace_context=notice.trace_context,
    )


def send_notices(notices: list[Notice]) -> None:
    """The notification outbox's group sender: a claim's standard notices, several in one job.

    Dramatiq's own cost per message (fetch, ack, middleware: what the no-op actor costs) was half of the
    notifications worker's CPU per email (issue 15, session 8): a group pays it once. Each notice keeps
    its own trace context (the job opens a span per notice under it) and its outbox row."""
    if len(notices) == 1:
        send_notice(notices[0])
        return
    tiers = {n.tier for n in notices}
    if len(tiers) != 1:  # one job, one queue: the dispatcher groups standard notices only
        raise ValueError("a group of notices spans tiers")
    enqueue(
        SEND_NOTIFICATIONS,
        queue_name=notification_queue(tiers.pop()),
        kwargs={
            "notices": [
                {
                    "patient_id": n.patient_id,
                    "event_type": n.event_type,
                    "ref_id": n.ref_id,
                    "urgent": n.urgent,
                    "cause": n.cause,
                    "intent_id": n.intent_id,
                    "trace_context": dict(n.trace_context),
                }
                for n in notices
            ]
        },
    )


@contextmanager
def notice_span(trace_context: Mapping[str, str] | None) -> Iterator[None]:
    """A consumer span for one notice of a group job, as a child of the change that owed it (a single
    job gets the same from TraceContextMiddleware, through its message's options)."""
    span = trace.get_tracer("booking_workers.broker").start_span(
        f"dramatiq {SEND_NOTIFICATION}",
        context=extract_context(dict(trace_context or {})),  # type: ignore[arg-type]
        kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "dramatiq"},
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    except BaseException as exc:
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()
        otel_context.detach(token)


class TraceContextMiddleware(Middleware):
    """Carries the W3C trace context in message options and opens a span around each job."""

    def __init__(self) -> None:
        self._local = threading.local()

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None
    ) -> None:
        """Stamp the current context if the producer did not (a retry keeps its original)."""
        if TRACE_OPTION not in message.options:
            message.options[TRACE_OPTION] = inject_headers()
        message.options.setdefault(ENQUEUED_AT_OPTION, int(time.time() * 1000))

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Start a consumer span as a child of the producer's context."""
        ctx = extract_context(dict(message.options.get(TRACE_OPTION) or {}))
        span = trace.get_tracer("booking_workers.broker").start_span(
            f"dramatiq {message.actor_name}",
            context=ctx,  # type: ignore[arg-type]
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._local.active = (span, token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """End the job's span, marking it failed when the actor raised."""
        self._end(exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """End the span of a skipped job."""
        self._end(None)

    def _end(self, exception: BaseException | None) -> None:
        active = getattr(self._local, "active", None)
        if active is None:
            return
        span, token = active
        self._local.active = None
        if exception is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exception).__name__))
        span.end()
        otel_context.detach(token)


def install(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Add the job-running middleware to `broker` unless it has it already (the broker, for chaining)."""
    present = {type(m) for m in broker.middleware}
    for mw in (TraceContextMiddleware, CurrentMessage):  # actors read their enqueue time and message id
        if mw not in present:
            broker.add_middleware(mw())
    return broker


def setup_worker_broker(settings: BookingSettings) -> dramatiq.Broker:
    """Install the process-wide broker from settings, ready to run jobs."""
    return install(setup_broker(settings))
