"""Reads for `async def` routes on PostgreSQL: awaited on the event loop, through asyncpg, no thread.

A plain `def` route runs on the thread pool: a queue put, a thread wake-up and the GIL handed back and
forth per request (issue 15's profile: the hop and its locking were 10-20% of the slot search's CPU).
The slot search instead awaits its one statement here. The driver is asyncpg: its protocol is compiled,
where psycopg's async connection waits in Python (measured in process: psycopg async cost as much CPU
per request as the thread hop it saved). SQLite (the embedded mode) reads on the thread pool.

Booking create stays a plain `def` route: run on the loop through SQLAlchemy's asyncio bridge it cost
the same CPU per request and served fewer bookings per second on the shared bench machine
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlencode

import asyncpg  # type: ignore[import-untyped]
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Dialect, Engine, Executable, TypeDecorator
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.session import ping_after_idle
from booking_core.observability.tracing import trace_engine

log = logging.getLogger(__name__)


class DbWork:
    """Reads for `async def` routes: awaited on the event loop on PostgreSQL, on the thread pool (autocommit
    sessions) elsewhere."""

    def __init__(self, read_sessions: sessionmaker[Session], async_engine: AsyncEngine | None = None) -> None:
        self._read_sessions = read_sessions
        self.async_engine = async_engine
        self._loop: asyncio.AbstractEventLoop | None = None
        # Statements are built once per filter combination (functools.lru_cache): few keys, kept.
        self._plans: dict[Executable, _Plan] = {}

    async def fetch_all(self, stmt: Executable, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one read statement, autocommit.

        On the async engine the statement is compiled once for asyncpg and run on the pooled
        connection's driver directly: SQLAlchemy's execution layer (execution context, cursor adapter,
        result object) cost more CPU than asyncpg's own query and decoding for the slot search
        (0.34 ms against 0.14 ms per page in process). The statement's bind processors are applied
        as SQLAlchemy would, and result columns of TypeDecorator types are processed by their
        `process_result_value`; other columns come as asyncpg decodes them (str, int, aware datetime).
        """
        if self.async_engine is None:
            return await run_in_threadpool(_fetch_all, self._read_sessions, stmt, params)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._new_loop(loop)
        plan = self._plans.get(stmt)
        if plan is None:
            plan = self._plans[stmt] = _Plan(stmt, self.async_engine.dialect)
        try:
            async with self.async_engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection  # asyncpg.Connection
                records = await driver.fetch(plan.sql, *plan.args(params))
        except (OSError, TimeoutError) as exc:
            raise sa_exc.OperationalError("connect", None, exc) from exc
        except asyncpg.PostgresError as exc:  # the same translation SQLAlchemy makes for its own calls
            raise sa_exc.DBAPIError(plan.sql, None, exc) from exc
        except asyncpg.InterfaceError as exc:  # e.g. the connection was lost meanwhile: a 503
            raise sa_exc.OperationalError(plan.sql, None, exc) from exc
        return plan.rows(records)

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


class _Plan:
    """One statement compiled for asyncpg: its SQL, its parameters in order, its result processing."""

    def __init__(self, stmt: Executable, dialect: Dialect) -> None:
        self.dialect = dialect
        self.compiled: Any = cast(Any, stmt).compile(dialect=dialect)
        self.sql: str = self.compiled.string
        self.names: list[str] = list(self.compiled.positiontup or ())
        processors: dict[str, Callable[[Any], Any]] = self.compiled._bind_processors
        self.processors = [processors.get(name) for name in self.names]
        columns = getattr(stmt, "selected_columns", ())
        self.decorators: list[tuple[int, TypeDecorator[Any]]] = [
            (i, col.type) for i, col in enumerate(columns) if isinstance(col.type, TypeDecorator)
        ]

    def args(self, params: dict[str, Any]) -> list[Any]:
        values = self.compiled.construct_params(params)
        return [
            value if fn is None or value is None else fn(value)
            for value, fn in zip((values[n] for n in self.names), self.processors, strict=True)
        ]

    def rows(self, records: Sequence[Any]) -> list[Sequence[Any]]:
        if not self.decorators:
            return [tuple(r) for r in records]
        out: list[Sequence[Any]] = []
        for record in records:
            row = list(record)
            for i, decorator in self.decorators:
                row[i] = decorator.process_result_value(row[i], self.dialect)
            out.append(row)
        return out


def _fetch_all(factory: sessionmaker[Session], stmt: Executable, params: dict[str, Any]) -> list[Any]:
    with factory() as session:
        return list(session.connection().execute(stmt, params).all())


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


def async_engine_like(engine: Engine, *, ping_idle_after: float | None, **pool: Any) -> AsyncEngine | None:
    """An asyncio engine (asyncpg) on the same PostgreSQL database as `engine`, or None (the thread pool):
    for SQLite, and for a URL parameter asyncpg has no equivalent of (logged by name, never its value)."""
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
    options: dict[str, Any] = {"hide_parameters": True, "pool_timeout": 10, **pool}
    options["connect_args"] = connect_args
    async_url = url.set(drivername="postgresql+asyncpg", query={})
    async_engine = create_async_engine(async_url, **options)
    trace_engine(async_engine.sync_engine)
    if ping_idle_after is not None:
        ping_after_idle(async_engine.sync_engine, ping_idle_after)
    return async_engine
