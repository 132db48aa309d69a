"""Staff schedule management, catalogue reads, health, metrics and the 503 when the database is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from booking_api.app import create_app
from booking_api.settings import ApiSettings
from booking_testing.procs import free_port


def test_schedule_generates_slots_idempotently(api) -> None:
    staff = api.auth("staff-1", "staff")
    cid = api.world.clinic_id
    r = api.client.post(
        f"/api/v1/staff/clinics/{cid}/schedules",
        headers=staff,
        json={
            "service_code": "gp-consult",
            "weekday": 0,
            "start_time": "09:00:00",
            "end_time": "10:00:00",
            "slot_minutes": 20,
            "capacity": 2,
        },
    )
    assert r.status_code == 201, r.text
    first = (datetime.now(UTC) + timedelta(days=1)).date()
    body = {"date_from": first.isoformat(), "date_to": (first + timedelta(days=13)).isoformat()}
    gen = api.client.post(f"/api/v1/staff/clinics/{cid}/slots/generate", headers=staff, json=body)
    assert gen.status_code == 200 and gen.json()["created"] == 6  # two Mondays x 3 slots
    again = api.client.post(f"/api/v1/staff/clinics/{cid}/slots/generate", headers=staff, json=body)
    assert again.json()["created"] == 0
    assert len(api.client.get(f"/api/v1/staff/clinics/{cid}/schedules", headers=staff).json()) == 1
    bad = api.client.post(
        f"/api/v1/staff/clinics/{cid}/schedules",
        headers=staff,
        json={
            "service_code": "gp-consult",
            "weekday": 9,
            "start_time": "10:00:00",
            "end_time": "09:00:00",
            "slot_minutes": 20,
            "capacity": 2,
        },
    )
    assert bad.status_code == 422 and "body.weekday" in {f["field"] for f in bad.json()["error"]["fields"]}


def test_capacity_never_below_booked(api) -> None:
    staff = api.auth("staff-1", "staff")
    api.book(api.world.slot2, "patient-a")
    api.book(api.world.slot2, "patient-b")
    r = api.client.patch(f"/api/v1/staff/slots/{api.world.slot2}", json={"capacity": 1}, headers=staff)
    assert r.status_code == 409
    r = api.client.patch(f"/api/v1/staff/slots/{api.world.slot2}", json={"capacity": 4}, headers=staff)
    assert r.status_code == 200 and r.json()["capacity"] == 4 and r.json()["free"] == 2


def test_catalogue_is_public(api) -> None:
    assert api.client.get("/api/v1/clinics").json()[0]["code"] == "C1"
    cat = api.client.get("/api/v1/tests").json()
    assert cat["packages"][0]["tests"] == ["GLU"]
    assert {s["code"] for s in cat["services"]} == {"blood-draw", "gp-consult"}


def test_health_and_metrics_use_route_templates(api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}
    b = api.book(api.world.slot5).json()
    api.client.get(f"/api/v1/bookings/{b['id']}", headers=api.auth())
    text = api.client.get("/metrics").text
    assert 'route="/api/v1/bookings/{booking_id}"' in text
    assert b["id"] not in text
    assert 'booking_api_bookings_total{action="create",outcome="created"}' in text


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:{port}/nope"])
def test_database_down_answers_503_with_retry_after(url: str) -> None:
    app = create_app(ApiSettings(database_url=url.format(port=free_port())))
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/api/v1/clinics", "/api/v1/slots", "/readyz"):
            r = client.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["Retry-After"] == "5"
            assert r.json()["error"]["code"] == "database_unavailable"
        assert client.get("/healthz").status_code == 200
