"""The slot search awaits PostgreSQL on the event loop (booking_api.dbwork): it still answers while every
thread-pool thread is taken, e.g. by slow sync work elsewhere in the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from booking_api.pgpool import asyncpg_connect_args

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


def test_search_answers_while_the_thread_pool_is_taken(pg_api: Api, pool_taken: None) -> None:
    started = time.monotonic()
    search = pg_api.client.get(
        "/api/v1/slots", params={"clinic_id": pg_api.world.clinic_id, "date_from": today()}
    )
    assert search.status_code == 200, search.text
    assert pg_api.world.slot5 in {s["id"] for s in search.json()["items"]}
    # It would wait for the blocked thread (30 s) if it needed the pool.
    assert time.monotonic() - started < 10


def test_a_client_without_its_context_gets_answers_on_every_loop(pg_api: Api) -> None:
    """Without `with`, a test client runs each request on a new event loop; the async pool's connections
    belong to the loop that opened them, so it starts afresh instead of failing with 500."""
    client = TestClient(pg_api.client.app, raise_server_exceptions=False)
    for _ in range(3):
        r = client.get("/api/v1/slots", params={"clinic_id": pg_api.world.clinic_id})
        assert r.status_code == 200, r.text
        assert pg_api.world.slot5 in {s["id"] for s in r.json()["items"]}


@pytest.fixture
def libpq_url_api(postgres_url: str) -> Iterator[Api]:
    """The app on a database URL with the libpq parameters a hospital's URL carries (TLS mode, timeout)."""
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}sslmode=prefer&connect_timeout=5&application_name=booking-api"
    yield from make_api(url, prod_like_settings(url))


def test_search_on_the_loop_takes_a_libpq_style_url(libpq_url_api: Api) -> None:
    """asyncpg is given the libpq parameters it understands; the search does not fail on them."""
    search = libpq_url_api.client.get(
        "/api/v1/slots", params={"clinic_id": libpq_url_api.world.clinic_id, "date_from": today()}
    )
    assert search.status_code == 200, search.text
    assert libpq_url_api.world.slot5 in {s["id"] for s in search.json()["items"]}


def test_libpq_parameters_are_translated_for_asyncpg_or_left_to_the_thread_pool() -> None:
    args = asyncpg_connect_args({"sslmode": "verify-full", "sslrootcert": "/ca.pem", "connect_timeout": "3"})
    assert args == {"timeout": 3.0, "dsn": "postgresql://?sslmode=verify-full&sslrootcert=%2Fca.pem"}
    assert asyncpg_connect_args({"application_name": "api"}) == {
        "timeout": 5,
        "server_settings": {"application_name": "api"},
    }
    # No asyncpg equivalent: None, so the reads stay on the sync engine, which passes it to libpq.
    assert asyncpg_connect_args({"sslmode": "require", "options": "-c statement_timeout=5s"}) is None
