"""OpenTelemetry set-up, called from entrypoints only.

Traces are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (the operator points it at
the collector Service); otherwise a no-op provider stays in place and nothing is exported.
"""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_configured: TracerProvider | None = None


def configure_telemetry(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install a tracer provider for this process; returns it, or None when tracing is off."""
    global _configured
    if _configured is not None:
        return _configured
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter is None and not endpoint:
        return None
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.namespace": "pat-booking-be"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = provider
    from booking_core.observability.tracing import instrument_clients

    instrument_clients()  # database and HTTP client spans, only when spans are exported at all
    return provider


def inject_headers() -> dict[str, str]:
    """The current trace context as W3C headers, for Kafka headers and Dramatiq options."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str]) -> object:
    """A context from W3C headers; pass it as `context=` when starting a span."""
    return propagate.extract(headers)
