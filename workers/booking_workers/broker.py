"""The workers' half of the Dramatiq broker: what running jobs needs, installed where actors are declared.

`booking_core.broker` builds the process's broker and enqueues by actor name (the producers need no more).
A process that runs jobs (`booking worker`, the workers inside `booking run`, tests) also needs the
middleware below: a consumer span per job as a child of the producer's trace context, and the current
message for the actors (their enqueue time and message id). `install` adds it once per broker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import CurrentMessage, Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace

from booking_core.broker import ENQUEUED_AT_OPTION, TRACE_OPTION, setup_broker
from booking_core.settings import BookingSettings
from booking_core.telemetry import extract_context, inject_headers


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
