"""Prometheus metrics of the API, and the ASGI middleware that times requests by route template.

Labels are route templates (`/api/v1/bookings/{booking_id}`), never raw paths, and never patient data.
With several uvicorn workers `booking api` sets PROMETHEUS_MULTIPROC_DIR and /metrics aggregates them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.context import Context
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_api.errors import error_body
from booking_core.telemetry import extract_context

log = logging.getLogger("booking_api.access")
tracer = trace.get_tracer("booking_api")

REQUEST_LATENCY = Histogram(
    "booking_api_request_duration_seconds",
    "API request latency by route template, method and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BOOKINGS = Counter(
    "booking_api_bookings_total",
    "Booking requests by action (create, cancel, reschedule) and outcome",
    ["action", "outcome"],
)
# At zero from the start, so the success-rate rules see the first booking after a restart as an increase.
BOOKINGS.labels(action="create", outcome="created")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DB_UNAVAILABLE = Counter("booking_api_db_unavailable_total", "Requests answered 503 because the DB was down")
# How well concurrent creates share round trips (booking_api.pipeline): statements per batch sent, and the
# batches that failed and were run one statement at a time.
DB_BATCH_STATEMENTS = Histogram(
    "booking_api_db_batch_statements",
    "Statements sent together in one round trip (batches of alike statements of concurrent requests)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
DB_BATCHES_SPLIT = Counter(
    "booking_api_db_batches_split_total", "Batches that failed as a whole and ran one statement at a time"
)


def record_booking(action: str, outcome: str) -> None:
    """Count one booking request's outcome."""
    BOOKINGS.labels(action=action, outcome=outcome).inc()


def render_metrics() -> tuple[bytes, str]:
    """The exposition text, aggregated over worker processes when running multiprocess."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class ObservabilityMiddleware:
    """Times each request, opens its server span, logs one line, and turns a crash into a bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
            await send(message)

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        # A client chooses the method token: anything unknown is one label value, not one per spelling.
        method = str(scope.get("method", "GET"))
        method = method if method in HTTP_METHODS else "OTHER"
        ctx = cast(Context, extract_context(headers))
        with tracer.start_as_current_span(method, context=ctx, kind=trace.SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as exc:
                # Type and frames only: the exception's message may carry row values.
                log.error("unhandled error", exc_info=True, extra={"reason": type(exc).__name__})
                if not started:
                    await _send_500(send)
                status = 500
            route = _route_template(scope)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
        elapsed = time.perf_counter() - start
        REQUEST_LATENCY.labels(method=method, route=route, status=str(status)).observe(elapsed)
        if status == 503:
            DB_UNAVAILABLE.inc()
        log.info(
            "request",
            extra={
                "method": method,
                "path": route,
                "status_code": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


async def _send_500(send: Send) -> None:
    import json

    body = json.dumps(error_body("internal_error", "internal error")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
