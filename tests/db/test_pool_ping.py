"""The API's pool pings a connection only after it idled: a connection the server dropped meanwhile is
replaced before a request sees it, and a connection reused at once costs no extra round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from booking_core.db.session import make_engine, ping_after_idle

pytestmark = pytest.mark.integration


def test_a_connection_dropped_while_idle_is_replaced_before_use(postgres_url: str) -> None:
    engine = make_engine(postgres_url, ping_idle_after=None, pool_size=1, max_overflow=0)
    ping_after_idle(engine, idle_seconds=0.0)  # every reuse counts as idle
    try:
        with engine.connect() as c:
            first_pid = c.execute(text("select pg_backend_pid()")).scalar()
        admin = make_engine(postgres_url)
        with admin.connect() as a:
            a.execute(text("select pg_terminate_backend(:p)"), {"p": first_pid})
            a.commit()
        admin.dispose()
        with engine.connect() as c:  # would raise OperationalError without the ping
            assert c.execute(text("select pg_backend_pid()")).scalar() != first_pid
    finally:
        engine.dispose()


def test_a_connection_reused_at_once_is_not_pinged(postgres_url: str) -> None:
    engine = make_engine(postgres_url, ping_idle_after=None, pool_size=1, max_overflow=0)
    ping_after_idle(engine, idle_seconds=3600)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda conn: pings.append(conn) or real_ping(conn)  # type: ignore[method-assign]
    try:
        for _ in range(3):
            with engine.connect() as c:
                c.execute(text("select 1"))
        assert pings == []
    finally:
        engine.dispose()
