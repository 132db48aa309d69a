"""Liveness that proves progress: a process's loops beat, the probe fails when a beat is overdue.

A metrics server answers while the loop that does the work is wedged, so probing /metrics proves only
that a thread is alive. Consumers beat after every poll (and every commit or retry wait), the relay
after every pass, Dramatiq workers whenever a queue's consumer thread fetches; a message in progress
for longer than the limit counts as a wedged worker thread. One small HTTP server per process serves:

    /livez    200 while every loop beat within max_age, 503 (with the stalled loops) otherwise
    /readyz   the same: these processes take no traffic, being ready means working
    /metrics  the Prometheus exposition (the same port the pods always had)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Check = Callable[[], str | None]  # a problem, or None


class Liveness:
    """Named heartbeats with a maximum age, plus extra checks."""

    def __init__(
        self, max_age: float, *, expect: Iterable[str] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, float | None] = dict.fromkeys(expect)
        self._checks: list[Check] = []

    def beat(self, source: str = "loop") -> None:
        """The loop `source` made progress just now."""
        now = self._clock()
        with self._lock:
            self._beats[source] = now

    def add_check(self, check: Check) -> None:
        """Another condition of liveness (e.g. no message in progress for too long)."""
        self._checks.append(check)

    def problems(self) -> tuple[bool, list[str]]:
        """(started, problems): started once every expected loop beat at least once."""
        now = self._clock()
        with self._lock:
            beats = dict(self._beats)
        started = bool(beats) and all(t is not None for t in beats.values())
        out = [
            f"{src}: no progress for {now - t:.0f}s (limit {self.max_age:.0f}s)"
            for src, t in sorted(beats.items())
            if t is not None and now - t > self.max_age
        ]
        out += [p for p in (c() for c in self._checks) if p]
        if not started:
            out.insert(0, "starting: " + ", ".join(s for s, t in sorted(beats.items()) if t is None))
        return started, out


class _Handler(BaseHTTPRequestHandler):
    liveness: Liveness

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path in ("/livez", "/readyz", "/healthz"):
            _, problems = self.liveness.problems()
            body: dict[str, Any] = {"status": "ok" if not problems else "unhealthy", "problems": problems}
            self._send(200 if not problems else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(port: int, liveness: Liveness, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /livez, /readyz and /metrics on port (0: a free one) from a daemon thread."""
    handler = type("HealthHandler", (_Handler,), {"liveness": liveness})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-server", daemon=True).start()
    return server
