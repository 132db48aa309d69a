"""Reads for `async def` routes on PostgreSQL: awaited on the event loop, through asyncpg, no thread.

A plain `def` route runs on the thread pool: a queue put, a thread wake-up and the GIL handed back and
forth per request (issue 15's profile: the hop and its locking were 10-20% of the slot search's CPU).
The slot search instead awaits its one statement here. The driver is asyncpg: its protocol is compiled,
where psycopg's async connection waits in Python (measured in process: psycopg async cost as much CPU
per request as the thread hop it saved). SQLite (the embedded mode) reads on the thread pool.

The connections are asyncpg's own, kept by `LoopConnections`, not SQLAlchemy's asyncio pool: checking a
connection out of that pool and back (greenlet, pool events, connection proxy) cost twice the query
itself (0.14 ms against 0.07 ms per search in process); asyncpg's Pool resets each connection with a
round trip on release, which these one-statement autocommit reads never need.

Booking create stays a plain `def` route: run on the loop through SQLAlchemy's asyncio bridge it cost
the same CPU per request and served fewer bookings per second on the shared bench machine
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Dialect, Executable, TypeDecorator
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.orm import Session, sessionmaker

from booking_api.pgpool import LoopConnections
from booking_core.db.models import UTCDateTime

log = logging.getLogger(__name__)


class DbWork:
    """Reads for `async def` routes: awaited on the event loop on PostgreSQL, on the thread pool (autocommit
    sessions) elsewhere."""

    def __init__(
        self, read_sessions: sessionmaker[Session], connections: Callable[[], LoopConnections] | None = None
    ) -> None:
        self._read_sessions = read_sessions
        self._new_connections = connections
        self._connections: LoopConnections | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dialect: Dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        # Statements are built once per filter combination (functools.lru_cache): few keys, kept.
        self._plans: dict[Executable, _Plan] = {}

    @property
    def on_loop(self) -> bool:
        """Whether reads are awaited on the event loop (PostgreSQL through asyncpg)."""
        return self._new_connections is not None

    async def fetch_all(self, stmt: Executable, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one read statement, autocommit.

        On PostgreSQL the statement is compiled once for asyncpg and run on a pooled asyncpg connection:
        SQLAlchemy's execution layer (execution context, cursor adapter, result object) cost more CPU
        than asyncpg's own query and decoding for the slot search (0.34 ms against 0.14 ms per page in
        process). The statement's bind processors are applied as SQLAlchemy would, and result columns of
        TypeDecorator types are processed by their `process_result_value`; other columns come as asyncpg
        decodes them (str, int, aware datetime).
        """
        if self._new_connections is None:
            return await run_in_threadpool(_fetch_all, self._read_sessions, stmt, params)
        connections = self._connections
        if connections is None or asyncio.get_running_loop() is not self._loop:
            connections = self._for_this_loop()
        plan = self._plans.get(stmt)
        if plan is None:
            plan = self._plans[stmt] = _Plan(stmt, self._dialect)
        try:
            conn = await connections.acquire()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise sa_exc.OperationalError("connect", None, exc) from exc
        try:
            records = await conn.fetch(plan.sql, *plan.args(params))
        except asyncpg.PostgresError as exc:  # the same translation SQLAlchemy makes for its own calls
            connections.release(conn)
            raise sa_exc.DBAPIError(plan.sql, None, exc) from exc
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:  # e.g. the connection was lost: 503
            connections.discard(conn)
            raise sa_exc.OperationalError(plan.sql, None, exc) from exc
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            connections.discard(conn)
            raise
        connections.release(conn)
        return plan.rows(records)

    def _for_this_loop(self) -> LoopConnections:
        """asyncpg connections belong to the loop that opened them: on another loop (a test client
        without its context runs each request on a new one) the pool starts afresh, leaving the old
        connections to the old loop. A uvicorn worker has one loop, so this runs once per process."""
        assert self._new_connections is not None
        self._loop = asyncio.get_running_loop()
        self._connections = self._new_connections()
        return self._connections

    async def dispose(self) -> None:
        """Close the pooled connections (app shutdown)."""
        if self._connections is not None and asyncio.get_running_loop() is self._loop:
            await self._connections.close()
        self._connections = None


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
        # asyncpg decodes timestamptz as aware datetimes in UTC already: UTCDateTime's result processing
        # would return each as it is, at a tenth of the search's CPU.
        self.decorators: list[tuple[int, TypeDecorator[Any]]] = [
            (i, col.type)
            for i, col in enumerate(columns)
            if isinstance(col.type, TypeDecorator) and not isinstance(col.type, UTCDateTime)
        ]

    def args(self, params: dict[str, Any]) -> list[Any]:
        values = self.compiled.construct_params(params)
        return [
            value if fn is None or value is None else fn(value)
            for value, fn in zip((values[n] for n in self.names), self.processors, strict=True)
        ]

    def rows(self, records: list[Any]) -> Sequence[Sequence[Any]]:
        if not self.decorators:
            return records  # asyncpg Records index and unpack like tuples
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
