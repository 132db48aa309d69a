"""Refused access is audited with the requesting subject (append-only); request ids are validated."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DatabaseError

from booking_core.db.models import PhiAuditLog
from booking_core.db.models_audit import AccessDeniedLog


def _denials(api) -> list[AccessDeniedLog]:
    with api.sessions() as s:
        return list(s.scalars(select(AccessDeniedLog).order_by(AccessDeniedLog.id)))


def test_a_patient_probing_another_patients_result_is_audited(api) -> None:
    rid = api.world.result_a
    r = api.client.get(
        f"/api/v1/test-results/{rid}", headers={**api.auth("patient-b"), "X-Request-ID": "probe-1"}
    )
    assert r.status_code == 404
    [row] = _denials(api)
    assert (row.actor, row.status, row.reason, row.method) == ("patient:patient-b", 404, "not_found", "GET")
    assert (row.route, row.resource_id, row.request_id) == (
        "/api/v1/test-results/{result_id}",
        rid,
        "probe-1",
    )
    # The record's owner and contents are never looked up for the audit.
    assert "patient-a" not in repr(vars(row)) and "Glucose" not in repr(vars(row))
    # Another patient's booking: also a 404, also audited.
    booking = api.book(api.world.slot5, subject="patient-a").json()["id"]
    assert api.client.get(f"/api/v1/bookings/{booking}", headers=api.auth("patient-b")).status_code == 404
    assert [(d.actor, d.resource_id) for d in _denials(api)][-1] == ("patient:patient-b", booking)
    # The owner's own reads are not refusals.
    assert api.client.get(f"/api/v1/test-results/{rid}", headers=api.auth("patient-a")).status_code == 200
    assert len(_denials(api)) == 2


def test_401_and_403_are_audited(api) -> None:
    assert api.client.get("/api/v1/bookings", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert api.client.get("/api/v1/bookings").status_code == 401
    staff_route = f"/api/v1/staff/clinics/{api.world.clinic_id}/slots"
    assert api.client.get(staff_route, headers=api.auth("patient-a")).status_code == 403
    rows = [(d.actor, d.status, d.reason, d.route) for d in _denials(api)]
    assert rows == [
        ("anonymous", 401, "unauthorized", "/api/v1/bookings"),
        ("anonymous", 401, "unauthorized", "/api/v1/bookings"),
        ("patient:patient-a", 403, "forbidden", "/api/v1/staff/clinics/{clinic_id}/slots"),
    ]
    # A 404 of a public route (nobody authenticated) is not an access decision.
    assert api.client.get("/api/v1/nowhere").status_code == 404
    assert len(_denials(api)) == 3


def test_the_denial_log_is_append_only(api) -> None:
    api.client.get("/api/v1/bookings")
    with api.sessions() as s:
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(update(AccessDeniedLog).values(actor="someone-else"))
            s.commit()
        s.rollback()
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(delete(AccessDeniedLog))
            s.commit()
        s.rollback()
    assert [d.actor for d in _denials(api)] == ["anonymous"]


@pytest.mark.parametrize(
    "given",
    [b"<script>alert(1)</script>", b"a" * 65, b"id with spaces", b"abc\xc3\xa9", b"../../etc/passwd", b""],
)
def test_a_malformed_request_id_is_replaced(api, given: bytes) -> None:
    r = api.client.get("/api/v1/test-results", headers={**api.auth(), "X-Request-ID": given})
    assert r.status_code == 200
    used = r.headers["x-request-id"]
    assert used.encode() != given and str(uuid.UUID(used)) == used
    with api.sessions() as s:
        stored = s.scalars(select(PhiAuditLog.request_id)).all()
    assert stored == [used]


def test_a_well_formed_request_id_is_kept(api) -> None:
    for given in ("req-123", str(uuid.uuid4())):
        r = api.client.get("/api/v1/test-results", headers={**api.auth(), "X-Request-ID": given})
        assert r.status_code == 200 and r.headers["x-request-id"] == given
    with api.sessions() as s:
        assert len(s.scalars(select(PhiAuditLog.request_id)).all()) == 2
    missing = api.client.get("/api/v1/clinics")
    assert uuid.UUID(missing.headers["x-request-id"])


def test_the_phi_read_log_is_append_only_too(api) -> None:
    assert api.client.get(f"/api/v1/test-results/{api.world.result_a}", headers=api.auth()).status_code == 200
    with api.sessions() as s:
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(delete(PhiAuditLog))
            s.commit()
        s.rollback()
        assert len(s.scalars(select(PhiAuditLog)).all()) == 1
