"""The notification job's three statements run on psycopg itself, on PostgreSQL.

The statements stay SQLAlchemy Core ones (load, store: one definition, SQLite runs them through
SQLAlchemy); here each is compiled once for psycopg and then executed on the pooled connection's driver
connection. Issue 15's fifth pass: `Connection.execute` was 29% of the worker's GIL time, of which
psycopg's own execute was a third; the rest (execution context, compiled-cache lookup, parameter
processing, result wrapping) is per-statement bookkeeping the job does not need.

Only on an autocommit connection, where each statement commits on its own exactly as through
SQLAlchemy (the claim is committed before the send, the record after it): SQLAlchemy is not told of
the statements, so they must not run inside a transaction it tracks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from opentelemetry.trace import SpanKind
from sqlalchemy import Connection, Select
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.sql import ClauseElement

from booking_core.observability.tracing import sql_tracer

_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]


def driver(db: object) -> psycopg.Cursor[Any] | None:
    """A psycopg cursor on the connection under an autocommit PostgreSQL Core connection, else None
    (SQLite, a Session, or a connection in a transaction: those go through SQLAlchemy).

    One cursor per pooled connection, kept in its `info`: a cursor per statement was 2% of the
    worker's GIL time. A cursor serves one statement at a time, as its connection does.
    """
    if not isinstance(db, Connection):
        return None
    info = db.info
    cur: psycopg.Cursor[Any] | None = info.get("pgraw_cursor")
    if cur is None:
        if db.dialect.name != "postgresql":
            return None
        raw = db.connection.driver_connection
        if not isinstance(raw, psycopg.Connection):
            return None
        cur = info["pgraw_cursor"] = raw.cursor()
    return cur if cur.connection.autocommit else None


@contextmanager
def invalidating(conn: Connection) -> Iterator[None]:
    """A psycopg error that broke the connection invalidates it in the pool, as SQLAlchemy does when a
    statement it runs finds the server gone: the next job opens a new connection instead of failing on
    the dead one."""
    try:
        yield
    except psycopg.Error:
        raw = conn.connection.driver_connection
        if isinstance(raw, psycopg.Connection) and (raw.broken or raw.closed):
            conn.invalidate()
        raise


class Statement:
    """A Core statement compiled once for psycopg: its SQL, the values it binds itself (literals in
    `.values(status="sending")` become parameters too) and, for a SELECT, its columns' names."""

    def __init__(self, stmt: ClauseElement) -> None:
        compiled = stmt.compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self.constants = dict(compiled.params)
        self.verb = self.sql.split(None, 1)[0]
        self.columns = tuple(stmt.selected_columns.keys()) if isinstance(stmt, Select) else ()

    def execute(self, cur: psycopg.Cursor[Any], params: Mapping[str, Any]) -> psycopg.Cursor[Any]:
        """Run with the statement's own values under `params` (rows are tuples, in `columns` order)."""
        tracer = sql_tracer()
        if tracer is None:
            return self._run(cur, params)
        # The span SQLAlchemy's instrumentation opens for a statement, without its parameters as there.
        info = cur.connection.info
        name = f"{self.verb} {info.dbname}"
        attributes = {
            "db.system": "postgresql",
            "db.name": info.dbname,
            "db.operation": name,
            "db.statement": self.sql,
            "net.peer.name": info.host,
            "net.peer.port": info.port,
        }
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
            return self._run(cur, params)

    def _run(self, cur: psycopg.Cursor[Any], params: Mapping[str, Any]) -> psycopg.Cursor[Any]:
        # psycopg prepares a statement on its 5th run on a connection by itself (as through SQLAlchemy).
        cur.execute(self.sql, {**self.constants, **params})
        return cur


def utc(value: datetime | None) -> datetime | None:
    """What `UTCDateTime` returns for a column's value (psycopg gives the session's time zone)."""
    return None if value is None else value.astimezone(UTC)
