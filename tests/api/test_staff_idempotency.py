"""Staff POSTs that create (schedules, slots) honour an Idempotency-Key like POST /bookings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from booking_core.db.models import Schedule, Slot

RULE = {
    "service_code": "gp-consult",
    "weekday": 2,
    "start_time": "09:00:00",
    "end_time": "10:00:00",
    "slot_minutes": 20,
    "capacity": 2,
}


def _schedules(api) -> int:
    with api.sessions() as s:
        return len(s.scalars(select(Schedule).where(Schedule.clinic_id == api.world.clinic_id)).all())


def _post_schedule(api, key: str | None, body: dict[str, object] = RULE, staff: str = "staff-1"):
    headers = api.auth(staff, "staff") | ({"Idempotency-Key": key} if key else {})
    return api.client.post(
        f"/api/v1/staff/clinics/{api.world.clinic_id}/schedules", json=body, headers=headers
    )


def test_same_key_creates_one_schedule_and_replays_the_answer(api) -> None:
    first = _post_schedule(api, "sched-1")
    assert first.status_code == 201, first.text
    assert first.headers.get("Idempotent-Replayed") is None
    again = _post_schedule(api, "sched-1")
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert _schedules(api) == 1


def test_same_key_with_another_body_is_refused(api) -> None:
    assert _post_schedule(api, "sched-2").status_code == 201
    r = _post_schedule(api, "sched-2", {**RULE, "capacity": 3})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert _schedules(api) == 1


def test_without_a_key_every_post_creates(api) -> None:
    assert _post_schedule(api, None).status_code == 201
    assert _post_schedule(api, None).status_code == 201
    assert _schedules(api) == 2


def test_keys_are_per_staff_member(api) -> None:
    a = _post_schedule(api, "shared-key", staff="staff-1")
    b = _post_schedule(api, "shared-key", staff="staff-2")
    assert a.status_code == b.status_code == 201
    assert b.headers.get("Idempotent-Replayed") is None and a.json()["id"] != b.json()["id"]
    assert _schedules(api) == 2


def test_a_failed_request_is_not_remembered(api) -> None:
    bad = _post_schedule(api, "sched-3", {**RULE, "service_code": "no-such-service"})
    assert bad.status_code == 422
    ok = _post_schedule(api, "sched-3")
    assert ok.status_code == 201 and ok.headers.get("Idempotent-Replayed") is None
    assert _schedules(api) == 1


def test_concurrent_retries_with_one_key_create_one(api) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: _post_schedule(api, "sched-race"), range(4)))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert _schedules(api) == 1


def test_slot_retry_with_the_key_replays_instead_of_conflicting(api) -> None:
    start = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    body = {
        "service_code": "blood-draw",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=15)).isoformat(),
        "capacity": 3,
    }
    headers = api.auth("staff-1", "staff") | {"Idempotency-Key": "slot-1"}
    url = f"/api/v1/staff/clinics/{api.world.clinic_id}/slots"
    first = api.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = api.client.post(url, json=body, headers=headers)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    no_key = api.client.post(url, json=body, headers=api.auth("staff-1", "staff"))
    assert no_key.status_code == 409
    with api.sessions() as s:
        assert len(s.scalars(select(Slot).where(Slot.starts_at == start)).all()) == 1


def test_the_header_is_documented(api) -> None:
    doc = api.client.get("/openapi.json").json()
    for path in ("/api/v1/staff/clinics/{clinic_id}/schedules", "/api/v1/staff/clinics/{clinic_id}/slots"):
        params = doc["paths"][path]["post"]["parameters"]
        header = next(p for p in params if p["name"] == "Idempotency-Key")
        assert header["in"] == "header" and not header.get("required", False)
