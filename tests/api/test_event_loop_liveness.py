"""The API's liveness is its event loop: /healthz answers while the loop runs and not while it is
wedged (the probe then times out and the kubelet restarts the pod)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import uvicorn

from booking_api.app import create_app
from booking_api.settings import ApiSettings
from booking_testing.procs import free_port


def healthz(port: int, timeout: float) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # timed out: nobody answered
        return None


def test_a_wedged_event_loop_fails_healthz(tmp_path) -> None:
    port = free_port()
    app = create_app(ApiSettings(database_url=f"sqlite:///{tmp_path}/api.db"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while healthz(port, 1) != 200:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        release = threading.Event()
        loops[0].call_soon_threadsafe(release.wait, 10)  # something blocks the loop
        assert healthz(port, 1.5) is None
        release.set()
        assert healthz(port, 5) == 200
    finally:
        server.should_exit = True
        thread.join(10)
