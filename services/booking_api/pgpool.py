"""A small pool of asyncpg connections for the reads awaited on one event loop (booking_api.dbwork).

Connections are handed out most recently used first and taken back as they are: the reads are single
autocommit statements, so there is no session state to reset (asyncpg's own Pool spends a round trip per
release on that). A connection that idled longer than `ping_idle_after` is checked with a round trip
first, as the sync engine does (booking_core.db.session.ping_after_idle); one that failed mid-statement is
closed, never handed out again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlencode

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Engine

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[Any]]  # returns an asyncpg.Connection


class LoopConnections:
    """At most `size` asyncpg connections of the running event loop; a caller waits `timeout` seconds at
    most for one when all are in use (TimeoutError)."""

    def __init__(self, connect: Connect, *, size: int, timeout: float, ping_idle_after: float | None) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._ping_idle_after = ping_idle_after
        self._idle: list[tuple[Any, float]] = []  # (connection, monotonic time it came back)
        self._open = 0  # connections open or being opened, idle or in use
        # Each waiter gets a connection, or None: a place to open one of its own.
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False

    async def acquire(self) -> Any:
        """A connection for one statement; give it back with `release` (or `discard` after a failure)."""
        while self._idle:
            conn, since = self._idle.pop()
            if conn.is_closed():
                self._forget()
                continue
            if self._ping_idle_after is not None and time.monotonic() - since > self._ping_idle_after:
                try:
                    await conn.execute("SELECT 1")
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self.discard(conn)
                    continue
                except BaseException:  # cancelled mid-ping: its place must not be lost with it
                    self.discard(conn)
                    raise
            return conn
        if self._open < self._size:
            self._open += 1
            return await self._open_one()
        conn = await self._wait()
        return conn if conn is not None else await self._open_one()

    def release(self, conn: Any) -> None:
        """Take back a connection that finished its statement."""
        if self._closed or conn.is_closed():
            self.discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))

    def discard(self, conn: Any) -> None:
        """Close a connection whose state is unknown (lost, cancelled mid-statement) and free its place."""
        conn.terminate()
        self._forget()

    async def close(self) -> None:
        """Close the idle connections now and the others as they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._open -= 1
            try:
                await conn.close(timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    def _forget(self) -> None:
        """One connection fewer: a waiter, if any, may open one in its place."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes to the waiter, so _open stays
                return
        self._open -= 1

    async def _open_one(self) -> Any:
        try:
            return await self._connect()
        except BaseException:
            self._forget()
            raise

    async def _wait(self) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                return await waiter
        except BaseException:
            # Handed a connection (or a place) just as the wait ended: pass it on rather than lose it.
            if waiter.done() and not waiter.cancelled():
                given = waiter.result()
                if given is None:
                    self._forget()
                else:
                    self.release(given)
            raise


# libpq URL parameters asyncpg reads from a DSN itself (TLS and failover); see asyncpg.connect.
_ASYNCPG_DSN_PARAMS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "passfile",
        "krbsrvname",
        "gsslib",
    }
)


def asyncpg_connect_args(query: Mapping[str, Any]) -> dict[str, Any] | None:
    """asyncpg's connect arguments for a libpq-style URL query, or None if a parameter has no equivalent.

    A hospital's database URL is written for libpq (`?sslmode=verify-full&sslrootcert=...`), which the
    sync engine (psycopg) takes as it is; SQLAlchemy would hand each parameter to asyncpg as a keyword,
    which asyncpg refuses. TLS and failover parameters go in a DSN asyncpg parses like libpq; the
    connect timeout and application name have their own arguments.
    """
    args: dict[str, Any] = {"timeout": 5}  # fail fast when the server is unreachable, as make_engine does
    dsn: dict[str, str] = {}
    for key, value in query.items():
        if not isinstance(value, str):  # a repeated parameter: libpq semantics we do not guess at
            return None
        if key in _ASYNCPG_DSN_PARAMS:
            dsn[key] = value
        elif key == "connect_timeout":
            args["timeout"] = float(value)
        elif key == "application_name":
            args["server_settings"] = {"application_name": value}
        else:
            return None
    if dsn:
        args["dsn"] = "postgresql://?" + urlencode(dsn)
    return args


def asyncpg_pool_like(
    engine: Engine, *, ping_idle_after: float | None, pool_size: int = 5, max_overflow: int = 10
) -> Callable[[], LoopConnections] | None:
    """A maker of asyncpg connection pools on the same PostgreSQL database as `engine` (one per event
    loop), or None (reads stay on the thread pool): for SQLite, and for a URL parameter asyncpg has no
    equivalent of (logged by name, never its value)."""
    url = engine.url
    if url.get_backend_name() != "postgresql":
        return None
    connect_args = asyncpg_connect_args(url.query)
    if connect_args is None:
        log.warning(
            "database URL has a parameter asyncpg cannot take: reads stay on the thread pool",
            extra={"parameters": sorted(url.query)},
        )
        return None
    target = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }
    connect = partial(asyncpg.connect, **{k: v for k, v in target.items() if v is not None}, **connect_args)
    return partial(
        LoopConnections, connect, size=pool_size + max_overflow, timeout=10, ping_idle_after=ping_idle_after
    )
