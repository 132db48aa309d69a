"""A worker's /livez follows its queues' fetches and fails on a message stuck in an actor."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from booking_core.health import Liveness, serve
from booking_testing.wait import wait_for
from booking_workers import health


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_status(port: int, want: int, timeout: float = 10.0) -> None:
    wait_for(lambda: status(port, "/livez") == want, timeout=timeout, what=f"/livez = {want}", interval=0.05)


def test_a_stuck_actor_fails_liveness_and_recovers() -> None:
    broker = StubBroker()
    broker.emit_after("process_boot")
    release = threading.Event()
    started = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="hq", max_retries=0)
    def hang(ref: str) -> None:
        started.set()
        release.wait(30)

    liveness = Liveness(1.0, expect=["queue hq"])
    health.watch(broker, liveness, max_message_seconds=1.0)
    server = serve(0, liveness, host="127.0.0.1")
    port = server.server_address[1]
    worker = dramatiq.Worker(broker, queues={"hq"}, worker_threads=1, worker_timeout=100)
    try:
        assert status(port, "/livez") == 503  # no fetch yet
        worker.start()
        wait_status(port, 200)
        time.sleep(1.5)  # idle fetches keep it alive past max_age
        assert status(port, "/livez") == 200
        hang.send("r1")
        assert started.wait(10)
        wait_status(port, 503, timeout=4)
        release.set()
        wait_status(port, 200)
    finally:
        release.set()
        worker.stop(timeout=5000)
        server.shutdown()


def test_a_consumer_thread_that_stops_fetching_fails_liveness() -> None:
    clock: list[float] = [0.0]
    liveness = Liveness(5.0, expect=["queue q"], clock=lambda: clock[0])
    broker: Any = StubBroker()
    broker.declare_queue("q")
    health.watch(broker, liveness, max_message_seconds=60)
    consumer = broker.consume("q", timeout=10)
    assert next(consumer) is None  # an idle fetch beats
    assert liveness.problems() == (True, [])
    clock[0] = 6.0  # no fetch since
    assert liveness.problems()[1] == ["queue q: no progress for 6s (limit 5s)"]
