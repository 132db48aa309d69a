"""Booking create's plain path (routes/create_fast.py) answers as FastAPI's own path does, and is taken.

A `Content-Type: application/json; charset=utf-8` request is JSON to FastAPI but not plain to the route,
so the same request can be sent both ways and the answers compared byte for byte.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi import routing
from sqlalchemy import select

from booking_api.routes.create_fast import plain_headers
from booking_core.db.models import IdempotencyKey, Patient, Slot

from .conftest import Api, token_for

PLAIN = "application/json"
VIA_FASTAPI = "application/json; charset=utf-8"
URL = "/api/v1/bookings"
# Values a new booking gets from the clock or a fresh id: masked to compare two creates.
_VOLATILE = re.compile(rb'"(id|created_at|updated_at|hold_expires_at)":"[^"]*"')


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many requests FastAPI solved the dependencies of (its path), counted from now."""
    calls = [0]
    real = routing.solve_dependencies

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(routing, "solve_dependencies", counting)
    yield calls


def post(api: Api, body: bytes, token: str, key: str, content_type: str = PLAIN):
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": content_type}
    return api.client.post(URL, content=body, headers=headers)


def cached_token(api: Api, subject: str = "patient-a", role: str = "patient") -> str:
    """A token the verifier has accepted once (the plain path takes cached tokens only)."""
    token = token_for(api.settings, subject, role)
    assert api.client.get(URL, headers={"Authorization": f"Bearer {token}"}).status_code in (200, 403)
    return token


def both_ways(api: Api, body: bytes, token: str, key: str | None = None) -> tuple[object, object]:
    """The same request sent plainly and through FastAPI's path (each with its own key unless given)."""
    plain = post(api, body, token, key or str(uuid.uuid4()))
    fastapi = post(api, body, token, key or str(uuid.uuid4()), VIA_FASTAPI)
    return plain, fastapi


def same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers.get("content-type") == b.headers.get("content-type")
    assert a.headers.get("Idempotent-Replayed") == b.headers.get("Idempotent-Replayed")
    assert _VOLATILE.sub(b"", a.content) == _VOLATILE.sub(b"", b.content), (a.content, b.content)


def test_a_plain_create_skips_fastapi_and_answers_as_it_does(api: Api, solved: list[int]) -> None:
    token = cached_token(api)
    body = json.dumps({"slot_id": api.world.slot5}).encode()
    solved[0] = 0
    plain = post(api, body, token, "plain-1")
    assert plain.status_code == 201, plain.text
    assert solved[0] == 0  # the plain path answered
    other = post(api, json.dumps({"slot_id": api.world.slot2}).encode(), token, "fastapi-1", VIA_FASTAPI)
    assert solved[0] == 1
    assert other.status_code == 201
    assert plain.json().keys() == other.json().keys()
    assert plain.json()["slot_id"] == api.world.slot5 and plain.json()["status"] == "pending"
    # Replays of either answer, both ways: the stored answer, byte for byte the same.
    for key in ("plain-1", "fastapi-1"):
        slot = api.world.slot5 if key == "plain-1" else api.world.slot2
        replay_body = json.dumps({"slot_id": slot}).encode()
        a, b = post(api, replay_body, token, key), post(api, replay_body, token, key, VIA_FASTAPI)
        same(a, b)
        assert a.headers["Idempotent-Replayed"] == "true"
        assert a.json() == (plain if key == "plain-1" else other).json()
    assert api.booked(api.world.slot5) == 1 and api.booked(api.world.slot2) == 1
    assert len(api.outbox("booking.requested")) == 2


def test_refusals_are_the_same_both_ways(api: Api) -> None:
    token = cached_token(api)
    b_token = cached_token(api, "patient-b")
    assert post(api, json.dumps({"slot_id": api.world.slot1}).encode(), b_token, "b-first").status_code == 201
    cases = [
        {"slot_id": api.world.slot1},  # full: 409
        {"slot_id": str(uuid.uuid4())},  # unknown slot: 404
        {"slot_id": api.world.slot5, "package_code": "NOPE"},  # unknown package: 422
        {"slot_id": api.world.slot5, "extra": 1},  # 422, FastAPI's own
        {"slot_id": 5},
        {"slot_id": ""},
        {"slot_id": "x" * 65},
        {"package_code": "DIABETES"},
        [],
    ]
    for case in cases:
        same(*both_ways(api, json.dumps(case).encode(), token))
    for raw in (
        b"",
        b"{",
        b"null",
        b'{"slot_id": "a", "slot_id": 7}',
        b'{"slot_id": 7, "slot_id": "a"}',
        b"\xff",
    ):
        same(*both_ways(api, raw, token))
    # Already booked on this slot: 409 both ways.
    assert post(api, json.dumps({"slot_id": api.world.slot2}).encode(), token, "a-slot2").status_code == 201
    same(*both_ways(api, json.dumps({"slot_id": api.world.slot2}).encode(), token))
    # A key reused for another body: 422 both ways.
    same(*both_ways(api, json.dumps({"slot_id": api.world.slot5}).encode(), token, key="a-slot2"))
    # Staff: 403 both ways (the plain path leaves staff to FastAPI).
    staff = cached_token(api, "staff-1", "staff")
    same(*both_ways(api, json.dumps({"slot_id": api.world.slot5}).encode(), staff))


def test_a_deactivated_account_is_refused_both_ways_and_gets_no_replay(api: Api) -> None:
    token = cached_token(api)
    body = json.dumps({"slot_id": api.world.slot5}).encode()
    assert post(api, body, token, "before").status_code == 201
    with api.sessions() as s:
        patient = s.get(Patient, "patient-a")
        assert patient is not None
        patient.active = False
        s.commit()
    a, b = both_ways(api, body, token, key="before")
    same(a, b)
    assert a.status_code == 403 and a.json()["error"]["code"] == "patient_deactivated"
    assert api.booked(api.world.slot5) == 1


def test_a_refused_plain_create_leaves_nothing_behind(api: Api) -> None:
    """A refusal after the key was claimed (already booked: the unique index, mid-write) rolls the whole
    transaction back and gives its connection back clean: the key is free again, and more refusals than
    the pool has connections still leave it serving."""
    token = cached_token(api)
    slot2 = json.dumps({"slot_id": api.world.slot2}).encode()
    assert post(api, slot2, token, "first").status_code == 201
    for i in range(api.settings.db_pool_size + api.settings.db_pool_max_overflow + 5):
        assert post(api, slot2, token, f"again-{i}").status_code == 409
    with api.sessions() as s:
        keys = set(s.scalars(select(IdempotencyKey.key)))
        assert keys == {"first"}
        assert s.scalar(select(Slot.booked).where(Slot.id == api.world.slot2)) == 1
    r = post(api, json.dumps({"slot_id": api.world.slot5}).encode(), token, "again-0")
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


AUTH, KEY, TYPE = b"authorization", b"idempotency-key", b"content-type"
JSON = (TYPE, b"application/json")


@pytest.mark.parametrize(
    ("headers", "plain"),
    [
        ([(AUTH, b"Bearer abc.def"), (KEY, b"k"), JSON], True),
        ([(AUTH, b"Bearer abc"), (KEY, b"k" * 255), JSON], True),
        ([(AUTH, b"Bearer abc"), (KEY, b"k")], False),  # no content type
        ([(AUTH, b"bearer abc"), (KEY, b"k"), JSON], False),
        ([(AUTH, b"Bearer a b"), (KEY, b"k"), JSON], False),
        ([(AUTH, b"Bearer abc"), (AUTH, b"Bearer abc"), (KEY, b"k"), JSON], False),
        ([(AUTH, b"Bearer abc"), (KEY, b"k"), (KEY, b"j"), JSON], False),
        ([(AUTH, b"Bearer abc"), (KEY, b""), JSON], False),
        ([(AUTH, b"Bearer abc"), (KEY, b"a b"), JSON], False),
        ([(AUTH, b"Bearer abc"), (KEY, b"k" * 256), JSON], False),
        ([(AUTH, b"Bearer abc"), (KEY, b"k"), (TYPE, b"text/plain")], False),
        ([(AUTH, b"Bearer abc"), (KEY, b"k"), JSON, JSON], False),
    ],
)
def test_only_plain_headers_are_read_by_the_route(headers: list[tuple[bytes, bytes]], plain: bool) -> None:
    assert (plain_headers(headers) is not None) is plain
