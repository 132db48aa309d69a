"""Tracing is off without an OTLP endpoint, and trace context survives a header round trip."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from booking_core import telemetry


def test_no_endpoint_means_no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setattr(telemetry, "_configured", None)
    assert telemetry.configure_telemetry("test") is None


def test_context_propagates_through_headers() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("producer") as parent:
        headers = telemetry.inject_headers()
    assert "traceparent" in headers
    ctx = telemetry.extract_context(headers)
    with tracer.start_as_current_span("consumer", context=ctx):  # type: ignore[arg-type]
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["consumer"].context.trace_id == parent.get_span_context().trace_id
    assert spans["consumer"].parent is not None
