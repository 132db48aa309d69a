"""Alike statements of concurrent requests sent together: one round trip and one commit for several.

A booking create is two statements on asyncpg (a read, then one conditional write), and each cost
PostgreSQL more to start, commit and answer than to do, and the API a round trip through asyncpg's
machinery (issue 15's profile: PostgreSQL ~0.55 ms and the API ~0.5 ms per create in process). Requests that
reach the same step within two turns of the event loop submit the same SQL with their own parameters; the
pipeline sends them as one asyncpg `fetchmany` on one connection: a Bind and Execute per statement and
one Sync, so PostgreSQL runs them in one implicit transaction and answers in one reply.

Only steps that ask for it are batched (booking_core.db.steps.Step.batch_by), and they promise two things:
each returns exactly one row, so the rows line up with the statements; and each is right on its own in
autocommit, so running it alone again after its batch failed is right too. The statements of a batch run
in the order of their `batch_by` values (the slot each write locks): two batches that lock the same rows
lock them in the same order and cannot deadlock each other. When a batch fails (one statement's integrity
violation, a deadlock with another transaction), PostgreSQL has rolled all of it back; each statement is
then run alone and answers for itself. A lost connection fails every statement of its batch, as it fails
a single one (503: the client retries with its Idempotency-Key).

What a batch changes for others: its row locks are held until its one commit, a few statements later,
rather than one statement's. Booking changes lock at most two slots, in the same (slot id) order
(booking_core.db.lifecycle.changes), so they wait for a batch, never deadlock with it. A transaction
that locked several slots in another order could; PostgreSQL then ends one of the two after
`deadlock_timeout`, and if it is the batch, the batch runs one by one as above.

Measured (docs/performance.md, session 7): under 16 concurrent creates on 2 uvicorn workers, batches
of several creates each; PostgreSQL's CPU per create fell from ~0.55 to ~0.22 ms, the API's in
process from ~0.52 to ~0.34 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import exc as sa_exc

from booking_api.metrics import DB_BATCH_STATEMENTS, DB_BATCHES_SPLIT
from booking_api.pgpool import LoopConnections

# Errors that mean the connection could not be had; the statements were not sent.
_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class _Item:
    order: str
    args: Sequence[Any]
    future: asyncio.Future[Any]


class StatementPipeline:
    """Batches of one SQL text from two turns of one event loop, on `connections` (module docstring)."""

    def __init__(self, connections: LoopConnections) -> None:
        self._connections = connections
        self._pending: dict[str, list[_Item]] = {}
        self._running: set[asyncio.Task[None]] = set()  # kept referenced until done

    def submit(self, sql: str, args: Sequence[Any], order: object) -> asyncio.Future[Any]:
        """A future of `sql`'s one row (an asyncpg Record) with `args`, or of its error: a PostgresError
        (the server refused the statement; the connection is sound) or the connection's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            # Sent two turns later: requests whose bytes arrive in the next poll of the loop join it too.
            # One turn gave batches of ~6 statements on the busier bench worker, two ~13, at +1 callback.
            loop.call_soon(loop.call_soon, self._flush)
        self._pending.setdefault(sql, []).append(_Item(str(order), args, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for sql, items in pending.items():
            task = asyncio.get_running_loop().create_task(self._run(sql, items))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, sql: str, items: list[_Item]) -> None:
        items.sort(key=_by_order)
        try:
            conn = await self._connections.acquire()
        except _CONNECT_ERRORS as exc:  # 503, as for a statement alone (booking_api.dbwork)
            _answer(items, [sa_exc.OperationalError("connect", None, exc)] * len(items))
            return
        except BaseException as exc:  # cancelled (shutdown): nothing was sent
            _answer(items, [exc] * len(items))
            raise
        try:
            outcomes, split = await _batch(conn, sql, items)
        except BaseException as exc:
            # Lost, timed out or cancelled mid-batch: the connection's state is unknown, and so is the
            # batch's (committed or not), as for a single statement lost after it was sent.
            self._connections.discard(conn)
            _answer(items, [exc] * len(items))
            if not isinstance(exc, Exception):
                raise
            return
        self._connections.release(conn)
        DB_BATCH_STATEMENTS.observe(len(items))
        if split:
            DB_BATCHES_SPLIT.inc()
        _answer(items, outcomes)


def _by_order(item: _Item) -> str:
    return item.order


async def _batch(conn: Any, sql: str, items: list[_Item]) -> tuple[list[Any], bool]:
    """Each item's row or PostgresError, in `items`' order; and whether the batch failed and each ran
    alone."""
    if len(items) > 1:
        try:
            records: list[Any] = await conn.fetchmany(sql, [item.args for item in items])
        except asyncpg.PostgresError:
            pass  # all of it was rolled back: each runs alone below
        else:
            if len(records) != len(items):  # a step broke its promise; what it wrote is committed
                raise RuntimeError(f"a batched statement returned {len(records)} rows for {len(items)} runs")
            return records, False
    outcomes: list[Any] = []
    for item in items:
        try:
            outcomes.append(await conn.fetchrow(sql, *item.args))
        except asyncpg.PostgresError as exc:
            outcomes.append(exc)
    return outcomes, len(items) > 1


def _answer(items: Sequence[_Item], outcomes: Sequence[Any]) -> None:
    for item, outcome in zip(items, outcomes, strict=True):
        if item.future.done():  # its request was cancelled; the statement ran all the same
            continue
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)
