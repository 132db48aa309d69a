"""A consumer's /livez follows its poll loop: a handler that hangs makes it fail, the metrics do not."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from booking_consumers.runtime import Consumer, ConsumerDef, Record
from booking_core.health import Liveness, serve
from booking_testing.wait import wait_for


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_status(port: int, path: str, want: int, timeout: float = 10.0) -> float:
    """Seconds until `path` answers `want`."""
    t0 = time.monotonic()
    wait_for(lambda: status(port, path) == want, timeout=timeout, what=f"{path} = {want}", interval=0.05)
    return time.monotonic() - t0


def test_a_wedged_poll_loop_fails_liveness_while_metrics_still_answer(sqlite_sessions, h):
    release = threading.Event()
    entered = threading.Event()

    def handle(session, event, effects):
        entered.set()
        release.wait(30)  # a handler stuck on a call that never returns

    definition = ConsumerDef(name="test", decode=lambda r: r.value.decode(), handle=handle,
                             message_key=lambda e, r: f"{r.offset}")  # fmt: skip
    transport = h.FakeTransport(batches=[[] for _ in range(20)])
    liveness = Liveness(1.0, expect=["poll"])
    stop = threading.Event()
    consumer = Consumer(definition, transport, sqlite_sessions, stop=stop,
                        poll_timeout=0.05, liveness=liveness)  # fmt: skip

    def poll(max_records: int, timeout: float) -> list[Record]:
        time.sleep(timeout)  # idles like a real poll with a timeout
        return transport.batches.pop(0) if transport.batches else []

    transport.poll = poll  # type: ignore[method-assign]
    server = serve(0, liveness, host="127.0.0.1")
    port = server.server_address[1]
    thread = threading.Thread(target=consumer.run, daemon=True)
    try:
        assert status(port, "/livez") == 503  # no poll yet: the startup probe keeps waiting
        thread.start()
        wait_status(port, "/livez", 200)
        time.sleep(1.5)  # idle polls keep it alive past max_age
        assert status(port, "/livez") == 200
        transport.batches.append([Record(topic="t", partition=0, offset=7, key=b"k", value=b"x", headers={})])
        assert entered.wait(10)
        took = wait_status(port, "/livez", 503)
        assert took < 3.0
        assert status(port, "/readyz") == 503
        assert status(port, "/metrics") == 200  # what the probes used to hit: alive while wedged
        release.set()
        wait_status(port, "/livez", 200)
    finally:
        release.set()
        stop.set()
        thread.join(10)
        server.shutdown()
