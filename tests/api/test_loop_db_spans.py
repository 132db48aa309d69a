"""The API's statements on asyncpg (booking create, slot search) are client spans, as the sync engine's are.

They run past SQLAlchemy's span hooks (booking_api.dbwork), so with tracing on they open their own: the
statement with its placeholders, never its values, and a failed one marked by its error's type only (a
unique violation's message names the key's values).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from booking_core.observability import tracing

from .conftest import Api, make_api, prod_like_settings, token_for


@pytest.fixture
def pg_api(postgres_url: str) -> Iterator[Api]:
    yield from make_api(postgres_url, prod_like_settings(postgres_url))


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument_clients(provider)
    yield exporter
    tracing.uninstrument_clients()


def _loop_spans(exporter: InMemorySpanExporter) -> list[Any]:
    # asyncpg's statements are numbered ($1); the sync engine's (psycopg) are named (%(name)s).
    return [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.CLIENT
        and (s.attributes or {}).get("db.system") == "postgresql"
        and "$1" in str((s.attributes or {}).get("db.statement", ""))
    ]


def test_create_and_search_on_the_loop_are_client_spans_without_values(
    pg_api: Api, exporter: InMemorySpanExporter
) -> None:
    assert pg_api.client.app.state.db_work.on_loop  # type: ignore[attr-defined]
    token = token_for(pg_api.settings, "patient-a")
    auth = {"Authorization": f"Bearer {token}"}
    slot = pg_api.world.slot5
    key = "key-span-1"
    first = pg_api.client.post(
        "/api/v1/bookings",
        content=json.dumps({"slot_id": slot}).encode(),
        headers={**auth, "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert first.status_code == 201, first.text
    exporter.clear()
    # The same patient on the same slot under another key: the write meets the one-live-booking index.
    again = pg_api.client.post(
        "/api/v1/bookings",
        content=json.dumps({"slot_id": slot}).encode(),
        headers={**auth, "Idempotency-Key": "key-span-2", "Content-Type": "application/json"},
    )
    assert again.status_code == 409, again.text
    spans = _loop_spans(exporter)
    assert len(spans) >= 2  # the read and the refused write
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].status.description is None
    assert (failed[0].attributes or {}).get("error.type") == "UniqueViolationError"
    assert not failed[0].events  # no recorded exception, whose message would quote the values

    exporter.clear()
    page = pg_api.client.get("/api/v1/slots", params={"limit": 5}, headers=auth)
    assert page.status_code == 200, page.text
    assert _loop_spans(exporter), "the slot search's read opened no span"

    seen = str(
        [(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()]
        + [(s.name, dict(s.attributes or {})) for s in spans]
    )
    for value in ("patient-a", key, "key-span-2", slot, first.json()["id"]):
        assert value not in seen
