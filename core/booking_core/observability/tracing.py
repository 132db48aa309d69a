"""Client spans for the database and outgoing HTTP calls, switched on with tracing itself.

`configure_telemetry` calls `instrument_clients()` once a tracer provider is installed, so `booking run`
without a collector pays nothing; `make_engine` then hands each new engine to `trace_engine`. SQL spans
carry the statement text with its placeholders (every query here binds its values; none is rendered with
literals), never the parameters; HTTP client spans carry the method, status and the URL without user
info or query string (a provider key may ride in one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from sqlalchemy import Engine

URL_ATTRIBUTES = ("url.full", "http.url")
_sql: tuple[Any, Any] | None = None  # (tracer, connections counter) once instrumented


def bare_url(url: str) -> str:
    """`url` without user info, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _http_request_hook(span: Span, request: Any) -> None:
    if span.is_recording():
        url = bare_url(str(request.url))
        for key in URL_ATTRIBUTES:
            span.set_attribute(key, url)


def instrument_clients(tracer_provider: TracerProvider | None = None) -> None:
    """Trace every httpx client, and the engines `trace_engine` is given from now on (idempotent)."""
    global _sql
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.version import __version__

    HTTPXClientInstrumentor().instrument(request_hook=_http_request_hook, tracer_provider=tracer_provider)
    if _sql is None:
        name = "opentelemetry.instrumentation.sqlalchemy"
        counter = metrics.get_meter(name, __version__).create_up_down_counter(
            "db.client.connections.usage", unit="connections"
        )
        _sql = (trace.get_tracer(name, __version__, tracer_provider), counter)


def statement_span(
    sql: str, *, database: str | None, host: str | None, port: int | str | None
) -> AbstractContextManager[Any]:
    """A client span for one PostgreSQL statement run on a driver connection directly, which
    `trace_engine`'s hooks do not see (the API's asyncpg reads and booking create, the notification
    worker's libpq statements): named and attributed as SQLAlchemy's instrumentation names its own, with
    the statement's text and placeholders, never its parameters. A no-op while tracing is off."""
    if _sql is None:
        return nullcontext()
    name = f"{sql.split(None, 1)[0]} {database}"
    attributes: dict[str, Any] = {
        "db.system": "postgresql",
        "db.name": database or "",
        "db.operation": name,
        "db.statement": sql,
        "net.peer.name": host or "",
    }
    if port is not None:
        attributes["net.peer.port"] = port
    return _failing_quietly(
        _sql[0].start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
    )


@contextmanager
def _failing_quietly(started: AbstractContextManager[Span]) -> Iterator[Span]:
    """A span marked failed by the error's type only: a driver's message may quote the row's values (a
    unique violation names the key), which must not reach a trace."""
    with started as span:
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", type(exc).__name__)
            raise


def trace_engine(engine: Engine) -> None:
    """Open a client span per statement on `engine` when tracing is on (a no-op otherwise).

    Per engine, not the instrumentor's global patching: that wraps create_engine before our modules
    import it and imports the asyncio extension (greenlet) we do not use.
    """
    if _sql is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    EngineTracer(_sql[0], engine, _sql[1], enable_commenter=False)  # type: ignore[no-untyped-call]


def uninstrument_clients() -> None:
    """Undo `instrument_clients` for engines made later and for httpx (tests)."""
    global _sql
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().uninstrument()
    _sql = None
