"""The notification job's three statements run on libpq itself, on PostgreSQL.

The statements stay SQLAlchemy Core ones (load, store: one definition, SQLite runs them through
SQLAlchemy); here each is compiled once, prepared once per connection and executed with
`PQexecPrepared` on the pooled connection's libpq handle, its rows loaded by psycopg's own loaders.
Issue 15's fifth pass, from py-spy's GIL samples of the notifications worker:

- `Connection.execute` was 29% of the worker's GIL time, of which psycopg's execute was a third; the
  rest (execution context, compiled-cache lookup, parameter processing, result wrapping) is
  per-statement bookkeeping the job does not need;
- psycopg's execute was then 20%: query conversion, parameter dumping, the prepare manager and its
  generator-based wait loop, which takes the GIL back at every poll. `PQexecPrepared` sends, waits
  and reads the result in C without the GIL, and the parameters are a few strings and timestamps,
  sent as text (the statements cast each one, so the server knows their types).

Only on an autocommit connection, where each statement commits on its own exactly as through
SQLAlchemy (the claim is committed before the send, the record after it): neither SQLAlchemy nor
psycopg is told of the statements, so they must not run inside a transaction either tracks.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import Transformer
from sqlalchemy import Connection, Select
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.sql import ClauseElement

from booking_core.observability.tracing import statement_span

_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s")
_NAMES = itertools.count(1)
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
# Every statement defined (at import, by load and store), so a new connection can prepare them all.
_ALL: list[Statement] = []


class Link:
    """One pooled connection's libpq handle, the statements prepared on it, and a loader of its rows.

    Kept in the pooled connection's `info`, which SQLAlchemy clears when it reconnects (a new server
    session, where nothing is prepared yet)."""

    __slots__ = ("database", "encoding", "host", "pgconn", "port", "prepared", "raw", "rows")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.pgconn = raw.pgconn
        info = raw.info
        self.encoding = info.encoding
        # The spans' peer, read once: each is a libpq call and a decode per read, three per statement
        # even with tracing off (issue 15, seventh pass), and a connection's peer does not change.
        self.database, self.host, self.port = info.dbname, info.host, info.port
        self.prepared: set[bytes] = set()
        self.rows = Transformer(raw)


def driver(db: object) -> Link | None:
    """The libpq link under an autocommit PostgreSQL Core connection, else None (SQLite, a Session, or
    a connection in a transaction: those go through SQLAlchemy)."""
    if not isinstance(db, Connection):
        return None
    info = db.info
    link: Link | None = info.get("pgraw")
    if link is None:
        if db.dialect.name != "postgresql":
            return None
        raw = db.connection.driver_connection
        if not isinstance(raw, psycopg.Connection):
            return None
        link = info["pgraw"] = Link(raw)
    return link if link.raw.autocommit else None


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


def _datetime(value: datetime, encoding: str) -> bytes:
    if value.tzinfo is None:  # as UTCDateTime refuses them
        raise ValueError("naive datetime given to a UTC column")
    return value.isoformat().encode()


# Each parameter type's PostgreSQL text input form, by exact type (a lookup, not an isinstance chain:
# 4% of the GIL samples). bool before int matters no more: they are different keys.
_TEXT: dict[type, Callable[[Any, str], bytes]] = {
    str: str.encode,
    bool: lambda v, _: b"t" if v else b"f",
    int: lambda v, _: str(v).encode(),
    datetime: _datetime,
}


def _text(value: object, encoding: str) -> bytes | None:
    """A parameter in PostgreSQL's text input format (NULL as None)."""
    if value is None:
        return None
    encode = _TEXT.get(type(value))
    if encode is None:
        raise TypeError(f"no text form for {type(value).__name__}")
    return encode(value, encoding)


class Statement:
    """A Core statement compiled once: its SQL with numbered placeholders, the values it binds itself
    (literals in `.values(status="sending")` become parameters too) and, for a SELECT, its columns."""

    def __init__(self, stmt: ClauseElement) -> None:
        compiled = stmt.compile(dialect=_DIALECT)
        self.sql = str(compiled)  # as SQLAlchemy would send it, for spans
        names: list[str] = []

        def number(m: re.Match[str]) -> str:
            if m[1] not in names:
                names.append(m[1])
            return f"${names.index(m[1]) + 1}"

        self.query = _PLACEHOLDER.sub(number, self.sql).replace("%%", "%").encode()
        # (name, its text form when the statement binds it itself): a job's parameters fill the rest.
        constants = compiled.params
        self.slots = tuple((n, _text(constants[n], "utf-8") if n in constants else None) for n in names)
        self.name = f"pgraw_{next(_NAMES)}".encode()
        self.columns = tuple(stmt.selected_columns.keys()) if isinstance(stmt, Select) else ()
        _ALL.append(self)

    def prepare(self, link: Link) -> None:
        """Prepare the statement on the link's server session, once."""
        if self.name not in link.prepared:
            _check(link, link.pgconn.prepare(self.name, self.query))
            link.prepared.add(self.name)

    def execute(self, link: Link, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run with `params` over the statement's own values; its rows, in `columns` order."""
        with statement_span(self.sql, database=link.database, host=link.host, port=link.port):
            return self._run(link, params)

    def _run(self, link: Link, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        pgconn, encoding = link.pgconn, link.encoding
        if self.name not in link.prepared:
            self.prepare(link)
        values = [_text(params[n], encoding) if n in params else fixed for n, fixed in self.slots]
        # Sends, waits and reads without the GIL. None is NULL (psycopg passes it too; its stub says not).
        result = pgconn.exec_prepared(self.name, values)  # type: ignore[arg-type]
        _check(link, result)
        count = result.ntuples
        if not count:
            return []
        rows = link.rows
        rows.set_pgresult(result)
        return rows.load_rows(0, count, tuple)


def prepare_all(db: object) -> int:
    """Prepare every statement on an autocommit PostgreSQL connection; how many it holds (0 elsewhere)."""
    link = driver(db)
    if link is None:
        return 0
    for stmt in _ALL:
        stmt.prepare(link)
    return len(link.prepared)


def _check(link: Link, result: pq.abc.PGresult) -> None:
    if result.status in _OK:
        return
    if link.pgconn.status == pq.ConnStatus.BAD:  # the server went away: psycopg calls it broken
        raise psycopg.OperationalError(result.get_error_message(link.encoding) or "connection lost")
    raise errors.error_from_result(result, encoding=link.encoding)


def utc(value: datetime | None) -> datetime | None:
    """What `UTCDateTime` returns for a column's value (psycopg gives the session's time zone)."""
    return None if value is None else value.astimezone(UTC)
