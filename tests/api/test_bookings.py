"""Booking: create, idempotency, list, read, cancel, reschedule, and the outbox event of each change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from booking_core.db.models import BookingStatusHistory, Hold, IdempotencyKey
from booking_core.events import parse_event

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_create_booking_holds_capacity_and_writes_one_event(api) -> None:
    r = api.client.post(
        "/api/v1/bookings",
        json={"slot_id": api.world.slot1, "package_code": "DIABETES"},
        headers={
            **api.auth(),
            "Idempotency-Key": str(uuid.uuid4()),
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending"
    assert body["service_code"] == "blood-draw"
    assert body["package_code"] == "DIABETES"
    assert body["hold_expires_at"] is not None
    assert api.booked(api.world.slot1) == 1
    rows = api.outbox(key=body["id"])
    assert [row.event_type for row in rows] == ["booking.requested"]
    event = parse_event(rows[0].payload)
    assert event.aggregate_id == body["id"] and event.payload["slot_id"] == api.world.slot1
    headers = rows[0].headers
    assert headers["event-type"] == "booking.requested" and headers["event-id"] == event.event_id
    # The request's trace continues through the outbox row (the relay copies these headers to Kafka).
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    with api.sessions() as s:
        assert s.scalar(select(Hold.status).where(Hold.booking_id == body["id"])) == "active"
        assert (
            s.scalar(
                select(BookingStatusHistory.to_status).where(BookingStatusHistory.booking_id == body["id"])
            )
            == "pending"
        )


def test_full_slot_answers_409_and_writes_nothing(api) -> None:
    assert api.book(api.world.slot1, "patient-a").status_code == 201
    r = api.book(api.world.slot1, "patient-b")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "slot_unavailable"
    assert api.booked(api.world.slot1) == 1
    assert len(api.outbox("booking.requested")) == 1


def test_same_patient_cannot_hold_two_places_on_one_slot(api) -> None:
    assert api.book(api.world.slot2).status_code == 201
    r = api.book(api.world.slot2)
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_booked"
    assert api.booked(api.world.slot2) == 1


def test_idempotency_key_replays_the_first_answer(api) -> None:
    key = str(uuid.uuid4())
    first = api.book(api.world.slot5, key=key)
    again = api.book(api.world.slot5, key=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.booked(api.world.slot5) == 1
    assert len(api.outbox("booking.requested")) == 1


def test_idempotency_key_with_another_body_is_refused(api) -> None:
    key = str(uuid.uuid4())
    assert api.book(api.world.slot5, key=key).status_code == 201
    r = api.book(api.world.slot2, key=key)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert r.json()["error"]["fields"][0]["field"] == "header.idempotency-key"
    assert api.booked(api.world.slot2) == 0


def test_idempotency_keys_are_per_patient(api) -> None:
    key = str(uuid.uuid4())
    assert api.book(api.world.slot5, "patient-a", key=key).status_code == 201
    r = api.book(api.world.slot5, "patient-b", key=key)
    assert r.status_code == 201 and r.headers.get("Idempotent-Replayed") is None
    assert api.booked(api.world.slot5) == 2


def test_failed_request_is_not_remembered(api) -> None:
    key = str(uuid.uuid4())
    assert api.book(api.world.slot1, "patient-b").status_code == 201
    assert api.book(api.world.slot1, key=key).status_code == 409
    assert api.count(IdempotencyKey) == 1  # only patient-b's success


def test_missing_key_and_bad_fields_are_named(api) -> None:
    r = api.client.post("/api/v1/bookings", json={"slot_id": 5, "extra": 1}, headers=api.auth())
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["error"]["fields"]}
    assert {"header.Idempotency-Key", "body.slot_id", "body.extra"} <= fields
    r = api.book(api.world.slot1, package_code="NOPE")
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "body.package_code"


def test_unknown_slot_is_404(api) -> None:
    assert api.book(str(uuid.uuid4())).status_code == 404


def test_slot_in_the_past_or_closed_is_409(api) -> None:
    r = api.client.patch(
        f"/api/v1/staff/slots/{api.world.slot5}",
        json={"status": "closed"},
        headers=api.auth("staff-1", "staff"),
    )
    assert r.status_code == 200
    assert api.book(api.world.slot5).status_code == 409


def test_unregistered_patient_gets_403(api) -> None:
    r = api.book(api.world.slot5, "nobody")
    assert r.status_code == 403 and r.json()["error"]["code"] == "patient_not_registered"


def test_list_and_get_only_my_bookings(api) -> None:
    a = api.book(api.world.slot5, "patient-a").json()
    b = api.book(api.world.slot5, "patient-b").json()
    mine = api.client.get("/api/v1/bookings", headers=api.auth("patient-a")).json()
    assert [x["id"] for x in mine] == [a["id"]]
    assert api.client.get(f"/api/v1/bookings/{a['id']}", headers=api.auth("patient-a")).status_code == 200
    # B's booking is indistinguishable from one that does not exist
    other = api.client.get(f"/api/v1/bookings/{b['id']}", headers=api.auth("patient-a"))
    missing = api.client.get(f"/api/v1/bookings/{uuid.uuid4()}", headers=api.auth("patient-a"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == missing.json()["error"]["code"]
    assert other.json()["error"]["message"] == missing.json()["error"]["message"]


def test_my_bookings_list_each_booking_as_its_own_page_does(api) -> None:
    """The list is read as plain columns (services/my_bookings.py), a booking's page through the ORM:
    the same booking reads the same in both, on hold, with a package, or cancelled, latest first."""
    held = api.book(api.world.slot1, "patient-a").json()
    packaged = api.book(api.world.slot5, "patient-a", package_code="DIABETES").json()
    cancelled = api.book(api.world.slot2, "patient-a").json()
    r = api.client.post(f"/api/v1/bookings/{cancelled['id']}/cancel", headers=api.auth("patient-a"))
    assert r.status_code == 200, r.text
    listed = api.client.get("/api/v1/bookings", headers=api.auth("patient-a"))
    assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
    items = listed.json()
    assert [x["id"] for x in items] == [packaged["id"], cancelled["id"], held["id"]]
    for item in items:
        page = api.client.get(f"/api/v1/bookings/{item['id']}", headers=api.auth("patient-a")).json()
        assert item == page
    assert items[0]["package_code"] == "DIABETES" and items[2]["hold_expires_at"] is not None
    assert items[1]["status"] == "cancelled" and items[1]["hold_expires_at"] is None
    two = api.client.get("/api/v1/bookings", params={"limit": 2}, headers=api.auth("patient-a")).json()
    assert two == items[:2]


def test_cannot_cancel_or_reschedule_someone_elses_booking(api) -> None:
    b = api.book(api.world.slot5, "patient-b").json()
    r = api.client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=api.auth("patient-a"))
    assert r.status_code == 404
    r = api.client.post(
        f"/api/v1/bookings/{b['id']}/reschedule",
        json={"slot_id": api.world.slot2},
        headers=api.auth("patient-a"),
    )
    assert r.status_code == 404
    assert api.booked(api.world.slot5) == 1 and api.booked(api.world.slot2) == 0
    assert api.outbox("booking.cancelled") == [] and api.outbox("booking.rescheduled") == []


def test_cancel_frees_the_place_and_is_idempotent(api) -> None:
    b = api.book(api.world.slot1).json()
    r = api.client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=api.auth())
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["cancel_reason"] == "patient_request"
    assert api.booked(api.world.slot1) == 0
    again = api.client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=api.auth())
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert len(api.outbox("booking.cancelled")) == 1
    with api.sessions() as s:
        assert s.scalar(select(Hold.status).where(Hold.booking_id == b["id"])) == "released"
    # the freed place can be booked again, also by the same patient
    assert api.book(api.world.slot1).status_code == 201


def test_cancel_inside_notice_period_is_409(api) -> None:
    b = api.book(api.world.slot_soon).json()
    r = api.client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=api.auth())
    assert r.status_code == 409 and r.json()["error"]["code"] == "notice_period_passed"
    assert api.booked(api.world.slot_soon) == 1


def test_reschedule_moves_the_place(api) -> None:
    b = api.book(api.world.slot1).json()
    r = api.client.post(
        f"/api/v1/bookings/{b['id']}/reschedule", json={"slot_id": api.world.slot2}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()["slot_id"] == api.world.slot2
    assert api.booked(api.world.slot1) == 0 and api.booked(api.world.slot2) == 1
    events = api.outbox(key=b["id"])
    assert [e.event_type for e in events] == ["booking.requested", "booking.rescheduled"]
    # same slot again: no change, no event
    again = api.client.post(
        f"/api/v1/bookings/{b['id']}/reschedule", json={"slot_id": api.world.slot2}, headers=api.auth()
    )
    assert again.status_code == 200 and len(api.outbox(key=b["id"])) == 2


def test_reschedule_rules(api) -> None:
    b = api.book(api.world.slot2, "patient-a").json()
    api.book(api.world.slot1, "patient-b")
    full = api.client.post(
        f"/api/v1/bookings/{b['id']}/reschedule", json={"slot_id": api.world.slot1}, headers=api.auth()
    )
    assert full.status_code == 409
    other_service = api.client.post(
        f"/api/v1/bookings/{b['id']}/reschedule", json={"slot_id": api.world.slot_gp}, headers=api.auth()
    )
    assert other_service.status_code == 422
    assert other_service.json()["error"]["fields"][0]["field"] == "body.slot_id"
    soon = api.book(api.world.slot_soon).json()
    late = api.client.post(
        f"/api/v1/bookings/{soon['id']}/reschedule", json={"slot_id": api.world.slot5}, headers=api.auth()
    )
    assert late.status_code == 409
    assert api.booked(api.world.slot2) == 1 and api.booked(api.world.slot5) == 0


def test_cancelled_booking_cannot_be_rescheduled(api) -> None:
    b = api.book(api.world.slot5).json()
    api.client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=api.auth())
    r = api.client.post(
        f"/api/v1/bookings/{b['id']}/reschedule", json={"slot_id": api.world.slot2}, headers=api.auth()
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"


def test_auth_errors(api) -> None:
    assert api.client.get("/api/v1/bookings").status_code == 401
    bad = api.client.get("/api/v1/bookings", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
    assert api.client.get("/api/v1/bookings", headers=api.auth("staff-1", "staff")).status_code == 403
    assert (
        api.client.get(f"/api/v1/staff/clinics/{api.world.clinic_id}/slots", headers=api.auth()).status_code
        == 403
    )


def test_slots_show_free_capacity_only(api) -> None:
    api.book(api.world.slot1)
    date_to = (datetime.now(UTC) + timedelta(days=6)).date().isoformat()
    r = api.client.get("/api/v1/slots", params={"service": "blood-draw", "date_to": date_to})
    assert r.status_code == 200
    ids = {s["id"]: s["free"] for s in r.json()["items"]}
    assert api.world.slot1 not in ids
    assert ids[api.world.slot5] == 5 and api.world.slot_gp not in ids
    reversed_range = api.client.get(
        "/api/v1/slots", params={"date_from": "2030-01-10", "date_to": "2030-01-01"}
    )
    assert reversed_range.status_code == 200
    assert reversed_range.json() == {"items": [], "next_cursor": None}
    bad = api.client.get("/api/v1/slots", params={"date_from": "2030-13-01", "limit": 0})
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} == {"query.date_from", "query.limit"}


def test_a_deactivated_patient_cannot_book(api) -> None:
    from booking_core.db.models import Patient

    with api.sessions() as s:
        s.get(Patient, "patient-a").active = False
        s.commit()
    r = api.book(api.world.slot1)
    assert r.status_code == 403 and r.json()["error"]["code"] == "patient_deactivated", r.text
    assert api.booked(api.world.slot1) == 0


def test_a_deactivated_patient_gets_no_replay_of_an_earlier_booking(api) -> None:
    """The account check comes before the Idempotency-Key replay: a deactivated account sees nothing."""
    from booking_core.db.models import IdempotencyKey, Patient

    first = api.book(api.world.slot1, key="replay-after-deactivation")
    assert first.status_code == 201, first.text
    with api.sessions() as s:
        s.get(Patient, "patient-a").active = False
        s.commit()
    r = api.book(api.world.slot1, key="replay-after-deactivation")
    assert r.status_code == 403 and r.json()["error"]["code"] == "patient_deactivated", r.text
    assert "Idempotent-Replayed" not in r.headers
    with api.sessions() as s:  # the refused request left the stored answer as it was
        row = s.scalars(select(IdempotencyKey).where(IdempotencyKey.key == "replay-after-deactivation")).one()
        assert row.response_status == 201 and row.response_body["id"] == first.json()["id"]
