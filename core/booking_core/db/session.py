"""Engines and session factories for PostgreSQL and SQLite (the embedded default).

Engines never log SQL parameters (`hide_parameters=True`): they hold patient data. SQLite connections get
WAL (readers do not block the writer), foreign keys and a busy timeout, so the embedded mode's threads
wait for each other instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, Insert, Select, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from booking_core.observability.tracing import trace_engine
from booking_core.privatefiles import private_dir, private_file

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


# A pooled connection unused for longer is checked with a round trip before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(
    url: str, *, ping_idle_after: float | None = PING_AFTER_IDLE_SECONDS, **kwargs: Any
) -> Engine:
    """An engine for `url` that never logs parameters; SQLite gets WAL, foreign keys and a busy timeout.

    A server's pooled connections are pinged when they idled over `ping_idle_after` seconds (None: never;
    `pool_pre_ping=True` in kwargs: on every checkout, one round trip more per transaction).
    """
    u = make_url(url)
    options: dict[str, Any] = {"hide_parameters": True, "future": True}
    if u.get_backend_name() == "sqlite":
        db = u.database
        if db and db != ":memory:" and not db.startswith("file:"):
            # Patient data: the file (and so SQLite's -wal/-shm, which copy its mode) is owner-only, and a
            # folder we create is too; an existing folder the operator chose is left as it is.
            folder = Path(db).parent
            if not folder.exists():
                private_dir(folder)
            private_file(Path(db))
        options["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        options["pool_size"] = 5
        options["max_overflow"] = 10
        options["pool_timeout"] = 10
        # Fail fast when the server is unreachable, so the API can answer 503 quickly.
        options["connect_args"] = {"connect_timeout": 5}
    options.update(kwargs)
    engine = create_engine(u, **options)
    trace_engine(engine)  # statement spans when tracing is on
    if u.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    elif ping_idle_after is not None and not options.get("pool_pre_ping"):
        ping_after_idle(engine, ping_idle_after)
    return engine


def ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Check a pooled connection with a round trip only when it sat unused for over `idle_seconds`.

    `pool_pre_ping` pays a round trip on every checkout; under load a connection comes back within
    milliseconds of its last use, and that round trip was a fifth of a booking's time in the database
    (issue 15's profile). A connection the server dropped while busy fails its request (a 503, a retried
    job) and the pool replaces it and every older one, as without pre-ping; one that idled is checked
    first.
    """

    def checkin(_dbapi: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in_at")
        if since is None or time.monotonic() - since <= idle_seconds:
            return  # new, or just used
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:  # the pool discards it and checks out another (DisconnectionError)
            raise DisconnectionError("pooled connection failed its ping") from exc

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One shared engine per URL in this process."""
    return make_engine(url)


def get_session_factory(url: str) -> sessionmaker[Session]:
    """The session factory of this process's shared engine for `url`."""
    return make_session_factory(get_engine(url))


@contextmanager
def rollback_on_error(session: Session) -> Iterator[Session]:
    """Roll `session` back when the block raises (the block commits itself on success).

    Rolling back at once, not when the session closes, releases the block's row locks before the error is
    translated and answered.
    """
    try:
        yield session
    except BaseException:
        session.rollback()
        raise


def begin_write(session: Session) -> None:
    """Open the session's write transaction now; on SQLite with BEGIN IMMEDIATE.

    pysqlite opens a transaction lazily, at the first INSERT/UPDATE/DELETE, so the reads before it see
    whatever was committed at each statement and nothing stops another writer in between (FOR UPDATE
    is ignored by SQLite). IMMEDIATE takes SQLite's single write lock up front: writers queue, and each
    reads what the previous one committed. On PostgreSQL this only starts the transaction.
    """
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        dbapi: Any = conn.connection.dbapi_connection
        if not dbapi.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def insert_ignore(session: Session, table: Any) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` into `table` (a model or a Table) in the session's dialect.

    The claim tables (processed messages, deliveries, notices) use it: a row that exists already is
    another transaction's claim, never an error. Only PostgreSQL and SQLite are supported.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"no INSERT ... ON CONFLICT DO NOTHING for {dialect}")


def first_then_rest(
    session: Session, stmt: Select[T], first: ColumnElement[bool], limit: int, *, fill: bool = True
) -> list[T]:
    """Up to `limit` rows of `stmt` (ordered, possibly FOR UPDATE): those matching `first`, then the rest.

    The outboxes hand over SVIP work before a standard backlog this way (issue 15): a priority row
    waits for one claim at the most, and each group keeps `stmt`'s order. With `fill=False` a claim
    that found priority rows returns them alone (a batch that is flushed as one is no slower than they).
    """
    rows: list[T] = []
    for group in (first, ~first):
        if len(rows) >= limit or (rows and not fill):
            break
        rows += session.scalars(stmt.where(group).limit(limit - len(rows))).all()
    return rows
