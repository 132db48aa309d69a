"""The liveness endpoint: 503 until every loop beat, 200 while they beat, 503 once one stalls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from booking_core.health import Liveness, serve


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str) -> tuple[int, dict[str, object] | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            body = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    return status, (json.loads(body) if body.startswith("{") else body)


def test_starting_live_then_stalled_over_http() -> None:
    clock = Clock()
    liveness = Liveness(30, expect=["poll"], clock=clock)
    server = serve(0, liveness, host="127.0.0.1")
    port = server.server_address[1]
    try:
        status, body = get(port, "/livez")
        assert status == 503 and "starting: poll" in str(body)
        liveness.beat("poll")
        assert get(port, "/livez")[0] == 200
        assert get(port, "/readyz")[0] == 200
        clock.now += 29
        assert get(port, "/livez")[0] == 200
        clock.now += 2
        status, body = get(port, "/livez")
        assert status == 503 and isinstance(body, dict)
        assert body["problems"] == ["poll: no progress for 31s (limit 30s)"]
        assert get(port, "/readyz")[0] == 503
        liveness.beat("poll")
        assert get(port, "/livez")[0] == 200
        # the metrics stay on the same port
        status, text = get(port, "/metrics")
        assert status == 200 and "python_info" in str(text)
    finally:
        server.shutdown()


def test_every_expected_loop_must_beat_and_checks_count() -> None:
    clock = Clock()
    liveness = Liveness(10, expect=["queue a", "queue b"], clock=clock)
    liveness.beat("queue a")
    assert liveness.problems() == (False, ["starting: queue b"])
    liveness.beat("queue b")
    assert liveness.problems() == (True, [])
    liveness.add_check(lambda: "a send_notification message in progress for 99s (limit 10s)")
    assert liveness.problems()[1] == ["a send_notification message in progress for 99s (limit 10s)"]
