"""Database and HTTP client spans: on with tracing, statements without parameters, URLs without secrets."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from booking_core.db.session import make_engine
from booking_core.observability import tracing


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument_clients(provider)
    yield provider, exporter
    tracing.uninstrument_clients()


def test_engines_made_without_tracing_open_no_spans(tmp_path: Path) -> None:
    assert tracing._sql is None
    engine = make_engine(f"sqlite:///{tmp_path}/plain.db")
    with engine.connect() as conn:
        conn.execute(text("select 1"))
    engine.dispose()  # nothing to assert beyond "no error": no tracer was ever asked


def test_statements_become_client_spans_without_their_parameters(spans, tmp_path: Path) -> None:
    provider, exporter = spans
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with provider.get_tracer("t").start_as_current_span("handler") as parent, engine.connect() as conn:
        conn.execute(text("select :patient"), {"patient": "PAT-SECRET-42"})
    engine.dispose()
    (sql,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert sql.attributes["db.system"] == "sqlite"
    assert sql.attributes["db.statement"] == "select ?"
    assert sql.parent is not None and sql.parent.span_id == parent.get_span_context().span_id
    assert "PAT-SECRET-42" not in str([dict(s.attributes or {}) for s in exporter.get_finished_spans()])


def test_http_client_spans_drop_user_info_and_query(spans) -> None:
    _, exporter = spans

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with httpx.Client() as client:
            r = client.post(f"http://user:pw@127.0.0.1:{port}/sms?api_key=SECRET", json={"to": "+3160"})
        assert r.status_code == 202
    finally:
        server.shutdown()
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert span.attributes["url.full"] == f"http://127.0.0.1:{port}/sms"
    assert "SECRET" not in str(dict(span.attributes or {})) and "pw" not in str(dict(span.attributes or {}))
    assert span.attributes.get("http.response.status_code", span.attributes.get("http.status_code")) == 202
