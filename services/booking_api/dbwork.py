"""Database work for `async def` routes: the service's sync code on the event loop, its I/O awaited.

A plain `def` route (or dependency) runs on the thread pool: a queue put, a thread wake-up and the GIL
handed back and forth per request, and under load the loop and the pool threads fight for the GIL (issue
15's profile: the hop and its locking were a fifth of a booking's CPU on the loop alone). On PostgreSQL
the busiest routes instead run their unchanged sync service function inside SQLAlchemy's asyncio
bridge (`AsyncSession.run_sync`: a greenlet on the loop), so each round trip is awaited and no thread
is involved. The driver there is asyncpg: its protocol is compiled, where psycopg's async connection
waits in Python (measured: psycopg async cost as much CPU per request as the thread hop it saved;
asyncpg 10-15% less). SQLite (the embedded mode) keeps the thread pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.session import ping_after_idle
from booking_core.observability.tracing import trace_engine

T = TypeVar("T")


class DbWork:
    """Runs `fn(session)` for an async route: a write session (rolled back unless `fn` commits) or, with
    `read_only`, an autocommit session (no BEGIN before the first statement, nothing to do at close)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        read_sessions: sessionmaker[Session],
        async_engine: AsyncEngine | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions
        self.async_engine = async_engine
        self._async: async_sessionmaker[AsyncSession] | None = None
        self._async_read: async_sessionmaker[AsyncSession] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if async_engine is not None:
            options: dict[str, Any] = {"expire_on_commit": False, "autoflush": False}
            self._async = async_sessionmaker(async_engine, **options)
            self._async_read = async_sessionmaker(
                async_engine.execution_options(isolation_level="AUTOCOMMIT"), **options
            )

    async def __call__(self, fn: Callable[[Session], T], *, read_only: bool = False) -> T:
        factory = self._async_read if read_only else self._async
        if factory is None:
            return await run_in_threadpool(
                _in_session, self._read_sessions if read_only else self._sessions, fn
            )
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._new_loop(loop)
        try:
            async with factory() as session:
                return await session.run_sync(fn)
        except (OSError, TimeoutError) as exc:
            # asyncpg reports a server it cannot reach (refused, unresolvable, timed out) as the socket's
            # own error, not as a DBAPI error as psycopg does: the same 503 (booking_api.errors).
            raise sa_exc.OperationalError("connect", None, exc) from exc

    async def _new_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """asyncpg connections belong to the loop that opened them: on another loop (a test client
        without its context runs each request on a new one) the pool starts afresh, leaving the old
        connections to the old loop. A uvicorn worker has one loop, so this runs once per process."""
        if self._loop is not None and self.async_engine is not None:
            await self.async_engine.dispose(close=False)
        self._loop = loop

    async def dispose(self) -> None:
        """Close the async pool's connections (app shutdown)."""
        if self.async_engine is not None:
            await self.async_engine.dispose()


def _in_session(factory: sessionmaker[Session], fn: Callable[[Session], T]) -> T:
    with factory() as session:
        return fn(session)


def async_engine_like(engine: Engine, *, ping_idle_after: float | None, **pool: Any) -> AsyncEngine | None:
    """An asyncio engine (asyncpg) on the same PostgreSQL database as `engine`, or None for SQLite."""
    url = engine.url
    if url.get_backend_name() != "postgresql":
        return None
    options: dict[str, Any] = {"hide_parameters": True, "pool_timeout": 10, **pool}
    # Fail fast when the server is unreachable, as make_engine does, so the API can answer 503 quickly.
    options["connect_args"] = {"timeout": 5}
    async_engine = create_async_engine(url.set(drivername="postgresql+asyncpg"), **options)
    trace_engine(async_engine.sync_engine)
    if ping_idle_after is not None:
        ping_after_idle(async_engine.sync_engine, ping_idle_after)
    return async_engine
