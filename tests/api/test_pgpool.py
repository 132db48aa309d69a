"""The asyncpg connection pool of the event-loop reads (booking_api.pgpool), on stand-in connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from booking_api.pgpool import LoopConnections


class FakeConnection:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False
        self.pings = 0

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True

    async def close(self, timeout: float) -> None:
        self.closed = True

    async def execute(self, sql: str) -> None:
        self.pings += 1


def pool(
    size: int, *, timeout: float = 5, ping_idle_after: float | None = None
) -> tuple[LoopConnections, list[Any]]:
    made: list[Any] = []

    async def connect() -> FakeConnection:
        made.append(FakeConnection(len(made)))
        return made[-1]

    return LoopConnections(connect, size=size, timeout=timeout, ping_idle_after=ping_idle_after), made


def test_connections_are_reused_and_bounded() -> None:
    async def scenario() -> None:
        conns, made = pool(2)
        a = await conns.acquire()
        conns.release(a)
        assert await conns.acquire() is a  # reused, not a second connection
        b = await conns.acquire()
        assert len(made) == 2
        third = asyncio.ensure_future(conns.acquire())
        await asyncio.sleep(0)
        assert not third.done()  # both in use: it waits
        conns.release(b)
        assert await asyncio.wait_for(third, 1) is b
        assert len(made) == 2

    asyncio.run(scenario())


def test_a_waiter_times_out_and_a_discarded_connection_frees_its_place() -> None:
    async def scenario() -> None:
        conns, made = pool(1, timeout=0.05)
        a = await conns.acquire()
        with pytest.raises(TimeoutError):
            await conns.acquire()
        waiter = asyncio.ensure_future(conns.acquire())
        await asyncio.sleep(0)
        conns.discard(a)  # lost mid-statement: the waiter opens a new one in its place
        fresh = await asyncio.wait_for(waiter, 1)
        assert a.closed and fresh is made[1] and not fresh.closed
        conns.release(fresh)
        assert await conns.acquire() is fresh

    asyncio.run(scenario())


def test_an_idle_connection_is_pinged_and_a_closed_one_replaced() -> None:
    async def scenario() -> None:
        conns, made = pool(2, ping_idle_after=0.0)
        a = await conns.acquire()
        conns.release(a)
        await asyncio.sleep(0.01)
        assert await conns.acquire() is a and a.pings == 1
        a.closed = True  # the server closed it while idle
        conns.release(a)
        b = await conns.acquire()
        assert b is made[1] and not b.closed
        await conns.close()
        conns.release(b)
        assert b.closed  # after close, a returned connection is closed too

    asyncio.run(scenario())
