"""Request size limits: 413 for bodies and 431 for headers, before the body is read or parsed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from booking_api.app import create_app
from booking_api.httpserver import uvicorn_limits
from booking_api.settings import ApiSettings
from booking_core.db.migrate import upgrade
from booking_core.db.models import Booking

from .edge_helpers import edge_api, raw_exchange, served

FIVE_MB = 5 * 1024 * 1024


def _big_booking(slot_id: str, size: int) -> bytes:
    return json.dumps({"slot_id": slot_id, "package_code": None, "padding": "x" * size}).encode()


def test_a_5mb_body_is_refused_with_413_and_never_handled(api) -> None:
    headers = {**api.auth(), "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
    r = api.client.post("/api/v1/bookings", content=_big_booking(api.world.slot5, FIVE_MB), headers=headers)
    assert r.status_code == 413, r.status_code
    assert r.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"slot_id": "' + api.world.slot5.encode() + b'", "padding": "'
        for _ in range(80):
            yield b"x" * 65536
        yield b'"}'

    r = api.client.post("/api/v1/bookings", content=chunks(), headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert api.count(Booking) == 0
    # A normal body still works.
    assert api.book(api.world.slot5).status_code in (201, 202)


def test_a_large_header_is_refused_with_431(api) -> None:
    r = api.client.get("/api/v1/clinics", headers={"X-Big": "a" * 100_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    assert api.client.get("/api/v1/clinics", headers={"X-Small": "a" * 1000}).status_code == 200


def test_limits_are_settings(tmp_path: Path) -> None:
    with edge_api(f"sqlite:///{tmp_path}/s.db", max_body_bytes=2048, max_header_bytes=8192) as api:
        headers = {**api.auth(), "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
        body = _big_booking(api.world.slot5, 4096)
        assert api.client.post("/api/v1/bookings", content=body, headers=headers).status_code == 413
        assert api.client.get("/api/v1/clinics", headers={"X-Big": "a" * 9000}).status_code == 431
        assert api.client.get("/api/v1/clinics", headers={"X-Big": "a" * 4000}).status_code == 200


@pytest.fixture
def live_port(tmp_path: Path):
    """The app under real uvicorn with `booking api`'s parser settings."""
    url = f"sqlite:///{tmp_path}/live.db"
    upgrade(url)
    settings = ApiSettings(database_url=url)
    with served(create_app(settings), **uvicorn_limits(settings)) as port:
        yield port


def test_413_is_answered_before_the_body_is_sent(live_port: int) -> None:
    head = (
        b"POST /api/v1/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {FIVE_MB}\r\n\r\n".encode()
    )
    answer, _ = raw_exchange(live_port, head)  # not one body byte sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    chunked = b"POST /api/v1/bookings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = (b"10000\r\n" + b"x" * 65536 + b"\r\n") * 80
    answer, _ = raw_exchange(live_port, chunked, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]


def test_a_10mb_header_is_refused_by_the_server(live_port: int) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000_000 + b"\r\n\r\n"
    answer, _ = raw_exchange(live_port, head)
    # h11 stops buffering at the limit (400), or the edge answers 431: never 200.
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:80]
    ok, _ = raw_exchange(live_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200"), ok[:80]
