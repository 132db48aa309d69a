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


@pytest.mark.parametrize("threads", [4, 8])
def test_an_svip_message_runs_next_behind_a_standard_backlog(redis_url: str, threads: int) -> None:
    # Dramatiq has no queue priorities: the worker fetches at most `threads` messages per queue, so with
    # every thread busy on a standard backlog none waits in the worker's local queue, and the SVIP one
    # is the next to start whatever the thread count (docs/notifications.md).
    broker = b.build_broker(redis_url, b.BrokerSettings(namespace=f"prio-{uuid.uuid4().hex[:8]}"))
    gate = threading.Event()
    lock = threading.Lock()
    started: list[str] = []

    def run(kind: str) -> None:
        with lock:
            started.append(kind)
        gate.wait(30)

    @dramatiq.actor(broker=broker, queue_name=NOTIFICATION_QUEUES["standard"], max_retries=0)
    def standard() -> None:
        run("standard")

    @dramatiq.actor(broker=broker, queue_name=NOTIFICATION_QUEUES["svip1"], max_retries=0)
    def svip() -> None:
        run("svip")

    for _ in range(3 * threads):
        standard.send()
    worker = build_worker(broker, "notifications", WorkerSettings(worker_threads=threads))
    worker.start()
    try:
        wait_for(lambda: len(started) == threads, timeout=10, what="every thread busy", interval=0.01)
        # What the standard consumer fetched beyond the messages in progress waits in the local queue.
        ahead = worker.queue_prefetch - threads
        wait_for(lambda: worker.work_queue.qsize() >= ahead, timeout=10, what="the prefetch", interval=0.01)
        svip.send()
        wait_for(lambda: worker.work_queue.qsize() >= ahead + 1, timeout=10, what="the SVIP", interval=0.01)
        gate.set()
        wait_for(lambda: len(started) == 3 * threads + 1, timeout=30, what="the backlog", interval=0.01)
        assert started.index("svip") == threads
    finally:
        gate.set()
        worker.stop(timeout=10_000)
        broker.close()
