"""Every date the schema accepts either works or gets a 4xx: no OverflowError 500 at the edges of time."""

from __future__ import annotations

import pytest

EXTREME_DATES = ["9999-12-31", "9000-01-01", "0001-01-01", "0001-01-02"]
EXTREME_DATETIMES = [
    "9999-12-31T23:59:59-05:00",  # UTC conversion overflows
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+05:00",  # UTC conversion underflows
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59",
]


def _ok_or_4xx(status: int) -> bool:
    return status < 300 or 400 <= status < 500


@pytest.mark.parametrize("day", EXTREME_DATES)
def test_slot_searches_take_any_date(api, day: str) -> None:
    staff = api.auth("staff-1", "staff")
    cid = api.world.clinic_id
    for params in ({"date_from": day}, {"date_to": day}, {"date_from": day, "date_to": day}):
        public = api.client.get("/api/v1/slots", params=params)
        assert _ok_or_4xx(public.status_code), (params, public.status_code)
        r = api.client.get(f"/api/v1/staff/clinics/{cid}/slots", params=params, headers=staff)
        assert _ok_or_4xx(r.status_code), (params, r.status_code)
    gen = api.client.post(
        f"/api/v1/staff/clinics/{cid}/slots/generate",
        json={"date_from": day, "date_to": day},
        headers=staff,
    )
    assert _ok_or_4xx(gen.status_code), gen.status_code


@pytest.mark.parametrize("when", EXTREME_DATETIMES)
def test_slot_creation_takes_any_datetime(api, when: str) -> None:
    staff = api.auth("staff-1", "staff")
    body = {"service_code": "blood-draw", "starts_at": when, "ends_at": when, "capacity": 1}
    r = api.client.post(f"/api/v1/staff/clinics/{api.world.clinic_id}/slots", json=body, headers=staff)
    assert _ok_or_4xx(r.status_code), r.status_code
    body["ends_at"] = "2030-01-01T10:00:00Z"
    r = api.client.post(f"/api/v1/staff/clinics/{api.world.clinic_id}/slots", json=body, headers=staff)
    assert _ok_or_4xx(r.status_code), r.status_code


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_generating_at_the_calendar_ends_with_a_schedule(api, day: str) -> None:
    staff = api.auth("staff-1", "staff")
    cid = api.world.clinic_id
    for weekday in range(7):  # slots run up to midnight: the last one ends past 9999-12-31
        rule = {
            "service_code": "blood-draw",
            "weekday": weekday,
            "start_time": "23:00:00",
            "end_time": "23:59:59",
            "slot_minutes": 30,
            "capacity": 1,
        }
        r = api.client.post(f"/api/v1/staff/clinics/{cid}/schedules", json=rule, headers=staff)
        assert r.status_code == 201, r.text
    gen = api.client.post(
        f"/api/v1/staff/clinics/{cid}/slots/generate", json={"date_from": day, "date_to": day}, headers=staff
    )
    assert _ok_or_4xx(gen.status_code), gen.status_code
    if gen.status_code >= 400:
        assert gen.json()["error"]["code"] == "date_out_of_range"
    listed = api.client.get(f"/api/v1/staff/clinics/{cid}/slots", params={"date_from": day}, headers=staff)
    assert _ok_or_4xx(listed.status_code)
