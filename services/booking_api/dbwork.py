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

Booking create runs here too (`steps`, `LoopSteps.run`): its statements are plans of
booking_core.db.steps, written once in the lifecycle and driven on asyncpg here or on a SQLAlchemy
connection elsewhere (SQLite, the consumers). Run through SQLAlchemy's asyncio bridge instead, it cost
the same CPU as the thread pool (docs/performance.md, third pass); directly on asyncpg it costs less.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Dialect, Executable, TypeDecorator
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import sqltypes

from booking_api.pgpool import LoopConnections
from booking_api.pipeline import StatementPipeline
from booking_core.db.models import UTCDateTime
from booking_core.db.steps import Plan, Step
from booking_core.observability.tracing import statement_span

T = TypeVar("T")

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
        self._pipeline: StatementPipeline | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dialect: Dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        # Statements are built once per filter combination (functools.lru_cache): few keys, kept.
        self._plans: dict[Executable, _Plan] = {}
        # Where the statements go, for their client spans (the sync engine's hooks do not see asyncpg).
        url = getattr(getattr(read_sessions, "kw", {}).get("bind"), "url", None)
        self.peer: dict[str, Any] = {
            "database": getattr(url, "database", None),
            "host": getattr(url, "host", None),
            "port": getattr(url, "port", None),
        }

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
        connections = self._loop_connections()
        plan = self.plan(stmt)
        conn = await _acquire(connections)
        try:
            with statement_span(plan.sql, **self.peer):
                records = await conn.fetch(plan.sql, *plan.args(params))
        except BaseException as exc:
            raise _translated(connections, conn, plan.sql, exc) from exc
        connections.release(conn)
        return plan.rows(records)

    def steps(self) -> LoopSteps:
        """A driver of plans whose statements each commit on their own (PostgreSQL only, `on_loop`): for
        plans whose writes are single statements (a conditional hold). Each statement takes a pooled
        connection for itself, or rides in a batch with the same statement of other requests
        (booking_api.pipeline) when its step allows it."""
        self._loop_connections()
        assert self._pipeline is not None
        return LoopSteps(self, self._pipeline)

    def plan(self, stmt: Executable) -> _Plan:
        """`stmt` compiled for asyncpg, once."""
        plan = self._plans.get(stmt)
        if plan is None:
            plan = self._plans[stmt] = _Plan(stmt, self._dialect)
        return plan

    def _loop_connections(self) -> LoopConnections:
        connections = self._connections
        if connections is None or asyncio.get_running_loop() is not self._loop:
            connections = self._for_this_loop()
        return connections

    def _for_this_loop(self) -> LoopConnections:
        """asyncpg connections belong to the loop that opened them: on another loop (a test client
        without its context runs each request on a new one) the pool starts afresh, leaving the old
        connections to the old loop. A uvicorn worker has one loop, so this runs once per process."""
        assert self._new_connections is not None
        self._loop = asyncio.get_running_loop()
        self._connections = self._new_connections()
        self._pipeline = StatementPipeline(self._connections)
        return self._connections

    async def dispose(self) -> None:
        """Close the pooled connections (app shutdown)."""
        if self._connections is not None and asyncio.get_running_loop() is self._loop:
            await self._connections.close()
        self._connections = None
        self._pipeline = None


class LoopSteps:
    """Plans driven on the event loop, each statement committed on its own (`DbWork.steps`)."""

    def __init__(self, db: DbWork, pipeline: StatementPipeline) -> None:
        self._db = db
        self._pipeline = pipeline

    async def run(self, plan: Plan[T]) -> T:
        """Drive a plan (booking_core.db.steps): each step compiled once, awaited here; an integrity
        violation is thrown into the plan as SQLAlchemy's IntegrityError, as the sync driver does."""
        try:
            step = next(plan)
            while True:
                try:
                    answer = await self._execute(step)
                except sa_exc.IntegrityError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _execute(self, step: Step) -> Any:
        plan = self._db.plan(step.stmt)
        args = plan.args(step.params)
        try:
            with statement_span(plan.sql, **self._db.peer):
                if step.batch_by is not None and step.want in ("row", "scalar"):
                    record = await self._pipeline.submit(plan.sql, args, step.params[step.batch_by])
                else:
                    record = await self._alone(plan.sql, args, step)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise sa_exc.IntegrityError(plan.sql, None, exc) from exc
        except asyncpg.PostgresError as exc:  # the same translation SQLAlchemy makes for its own calls
            raise sa_exc.DBAPIError(plan.sql, None, exc) from exc
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:  # e.g. the connection was lost: 503
            raise sa_exc.OperationalError(plan.sql, None, exc) from exc
        if step.want == "count":
            return int(record.rpartition(" ")[2])
        if record is None or step.want == "none":
            return None
        row = plan.rows([record])[0]
        return row[0] if step.want == "scalar" else row

    async def _alone(self, sql: str, args: list[Any], step: Step) -> Any:
        """The statement on a pooled connection of its own: its row, or its status for count and none."""
        connections = self._db._loop_connections()
        conn = await _acquire(connections)
        try:
            if step.want in ("count", "none"):
                result = await conn.execute(sql, *args)
            else:
                result = await conn.fetchrow(sql, *args)
        except BaseException as exc:
            if isinstance(exc, asyncpg.PostgresError):  # the server answered: the connection is sound
                connections.release(conn)
            else:  # lost, timed out or cancelled mid-statement: its state is unknown
                connections.discard(conn)
            raise
        connections.release(conn)
        return result


async def _acquire(connections: LoopConnections) -> Any:
    try:
        return await connections.acquire()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise sa_exc.OperationalError("connect", None, exc) from exc


def _translated(connections: LoopConnections, conn: Any, sql: str, exc: BaseException) -> BaseException:
    """The connection released or discarded after `exc` mid-statement, and the error to raise instead."""
    if isinstance(exc, asyncpg.PostgresError):  # the server answered: the connection is sound
        connections.release(conn)
        return sa_exc.DBAPIError(sql, None, exc)
    connections.discard(conn)  # lost, timed out or cancelled mid-statement: its state is unknown
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return sa_exc.OperationalError(sql, None, exc)  # 503
    return exc


_REQUIRED = object()  # a parameter the caller must give


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
        self.decorators: list[tuple[int, Callable[[Any], Any]]] = []
        for i, col in enumerate(columns):
            if isinstance(col.type, TypeDecorator) and not isinstance(col.type, UTCDateTime):
                self.decorators.append((i, partial(col.type.process_result_value, dialect=dialect)))
            elif isinstance(col.type.dialect_impl(dialect), sqltypes.JSON):
                # asyncpg hands json and jsonb over as text (no codec is set on these connections).
                self.decorators.append((i, _json_value))

        # Each positional parameter: the key it is given by, or the value the statement holds (a literal
        # such as `booked + 1`). Read directly, not through `construct_params`, which rebuilt the whole
        # parameter dict per call (a fifth of the create's statement overhead in process).
        binds = self.compiled.binds
        self.direct = not any(b.expanding or b.callable is not None for b in binds.values())
        self.spec: list[tuple[str, Any, Callable[[Any], Any] | None]] = [
            (binds[n].key, _REQUIRED if binds[n].required else binds[n].value, fn)
            for n, fn in zip(self.names, self.processors, strict=True)
        ]

    def args(self, params: dict[str, Any]) -> list[Any]:
        if self.direct:
            try:
                return [
                    value if fn is None or value is None else fn(value)
                    for key, fixed, fn in self.spec
                    for value in (params[key] if fixed is _REQUIRED else params.get(key, fixed),)
                ]
            except KeyError:
                pass  # a parameter missing: construct_params names it in its error
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
            for i, decode in self.decorators:
                row[i] = decode(row[i])
            out.append(row)
        return out


def _json_value(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _fetch_all(factory: sessionmaker[Session], stmt: Executable, params: dict[str, Any]) -> list[Any]:
    with factory() as session:
        return list(session.connection().execute(stmt, params).all())
