"""Booking create and slot search await PostgreSQL on the event loop (booking_api.dbwork): they still
answer while every thread-pool thread is taken, e.g. by slow sync work elsewhere in the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from .conftest import Api, make_api, prod_like_settings, today


@pytest.fixture
def pg_api(postgres_url: str) -> Iterator[Api]:
    """The app on PostgreSQL (SQLite has no async driver here: its routes keep the thread pool)."""
    yield from make_api(postgres_url, prod_like_settings(postgres_url))


@pytest.fixture
def pool_taken(pg_api: Api) -> Iterator[None]:
    """The app's thread pool shrunk to one thread and that thread blocked until the test ends."""
    portal = pg_api.client.portal
    assert portal is not None
    release = threading.Event()
    safety = threading.Timer(30, release.set)  # a failing test must not hang the suite
    safety.start()

    async def shrink() -> float:
        limiter = anyio.to_thread.current_default_thread_limiter()
        before = limiter.total_tokens
        limiter.total_tokens = 1
        return before

    async def restore(tokens: float) -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = tokens

    tokens = portal.call(shrink)
    blocked: Future[bool] = portal.start_task_soon(anyio.to_thread.run_sync, release.wait)
    try:
        yield
    finally:
        release.set()
        safety.cancel()
        blocked.result(timeout=10)
        portal.call(restore, tokens)


def test_booking_and_search_answer_while_the_thread_pool_is_taken(pg_api: Api, request) -> None:
    api = pg_api
    # The token is verified once (on the pool) before the pool is taken; later requests hit the cache.
    auth = api.auth()  # one token: a token minted in another second would miss the cache
    assert api.client.get("/api/v1/bookings", headers=auth).status_code == 200
    request.getfixturevalue("pool_taken")
    started = time.monotonic()
    r = api.client.post(
        "/api/v1/bookings", json={"slot_id": api.world.slot5}, headers={**auth, "Idempotency-Key": "k1"}
    )
    assert r.status_code == 201, r.text
    search = api.client.get("/api/v1/slots", params={"clinic_id": api.world.clinic_id, "date_from": today()})
    assert search.status_code == 200, search.text
    assert any(s["id"] == api.world.slot5 for s in search.json()["items"])
    # Both would wait for the blocked thread (30 s) if they needed the pool.
    assert time.monotonic() - started < 10
    assert api.booked(api.world.slot5) == 1


def test_a_client_without_its_context_gets_answers_on_every_loop(pg_api: Api) -> None:
    """Without `with`, a test client runs each request on a new event loop; the async pool's connections
    belong to the loop that opened them, so it starts afresh instead of failing with 500."""
    client = TestClient(pg_api.client.app, raise_server_exceptions=False)
    for _ in range(3):
        r = client.get("/api/v1/slots", params={"clinic_id": pg_api.world.clinic_id})
        assert r.status_code == 200, r.text
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": pg_api.world.slot5},
        headers={**pg_api.auth(), "Idempotency-Key": "new-loop"},
    )
    assert booked.status_code == 201, booked.text
