"""How often a worker looks at its idle queues: tier queues at the idle poll, delay queues less often."""

from __future__ import annotations

import threading
import uuid

import dramatiq
import pytest

from booking_core.topology import NOTIFICATION_QUEUES
from booking_testing.wait import wait_for
from booking_workers import broker as b
from booking_workers.main import build_worker
from booking_workers.settings import WorkerSettings


@pytest.mark.parametrize("delay_poll_ms", [25, 1000])
def test_delay_queues_are_polled_at_their_own_pace_and_delayed_messages_still_run(
    redis_url: str, delay_poll_ms: int
) -> None:
    broker = b.build_broker(redis_url, b.BrokerSettings(namespace=f"poll-{uuid.uuid4().hex[:8]}"))
    done: dict[str, threading.Event] = {"now": threading.Event(), "later": threading.Event()}

    @dramatiq.actor(broker=broker, queue_name=NOTIFICATION_QUEUES["svip1"], max_retries=0)
    def probe(which: str) -> None:
        done[which].set()

    settings = WorkerSettings(worker_threads=2, worker_idle_poll_ms=25, worker_delay_poll_ms=delay_poll_ms)
    worker = build_worker(broker, "notifications", settings)
    worker.start()
    try:
        tiers = set(NOTIFICATION_QUEUES.values())
        wait_for(lambda: len(worker.consumers) == 6, timeout=10, what="six consumers", interval=0.01)
        consumers = {name: thread for name, thread in worker.consumers.items()}

        def timeouts() -> dict[str, int] | None:
            found = {n: getattr(t.consumer, "timeout", None) for n, t in consumers.items()}
            return found if None not in found.values() else None  # type: ignore[return-value]

        # The tier queues keep the short idle poll (an SVIP notice must not wait for the next fetch); their
        # delay queues, whose messages wait seconds anyway, are looked at every delay_poll_ms at most.
        want = {q: 25 for q in tiers} | {f"{q}.DQ": max(25, delay_poll_ms) for q in tiers}
        assert wait_for(timeouts, timeout=10, what="consumers to start", interval=0.01) == want
        probe.send_with_options(args=("later",), delay=200)
        probe.send("now")
        assert done["now"].wait(10)
        assert done["later"].wait(10 + delay_poll_ms / 1000)
    finally:
        worker.stop(timeout=10_000)
        broker.close()
