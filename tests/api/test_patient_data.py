"""Results, recommendations, notifications and preferences: only the patient's own, reads audit-logged."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from booking_core.db.models import PhiAuditLog


def test_results_are_mine_only_and_audited(api) -> None:
    rid = api.world.result_a
    mine = api.client.get("/api/v1/test-results", headers=api.auth("patient-a"))
    assert mine.status_code == 200
    assert [r["id"] for r in mine.json()] == [rid] and mine.json()[0]["abnormal"] is True
    detail = api.client.get(f"/api/v1/test-results/{rid}", headers=api.auth("patient-a"))
    assert detail.status_code == 200
    obs = detail.json()["observations"][0]
    assert obs["flag"] == "H" and obs["reference_range"]["high"] == 5.6
    # B sees nothing and cannot tell A's result from a missing one
    assert api.client.get("/api/v1/test-results", headers=api.auth("patient-b")).json() == []
    other = api.client.get(f"/api/v1/test-results/{rid}", headers=api.auth("patient-b"))
    missing = api.client.get(f"/api/v1/test-results/{uuid.uuid4()}", headers=api.auth("patient-b"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["message"] == missing.json()["error"]["message"]
    with api.sessions() as s:
        rows = s.scalars(select(PhiAuditLog).order_by(PhiAuditLog.id)).all()
    reads = [(r.actor, r.resource_id, r.action) for r in rows]
    assert ("patient:patient-a", rid, "read") in reads
    assert all(r.patient_id != "patient-a" or r.actor == "patient:patient-a" for r in rows)


def test_hidden_results_are_not_served(api) -> None:
    from booking_core.db.models import TestResult

    with api.sessions() as s:
        r = s.get(TestResult, api.world.result_a)
        r.status = "entered-in-error"
        s.commit()
    assert api.client.get("/api/v1/test-results", headers=api.auth()).json() == []
    assert api.client.get(f"/api/v1/test-results/{api.world.result_a}", headers=api.auth()).status_code == 404


def test_preferences_roundtrip_and_validation(api) -> None:
    url = "/api/v1/me/notification-preferences"
    assert api.client.get(url, headers=api.auth()).json()["sms"] is True
    body = {
        "email": True,
        "sms": False,
        "push": True,
        "in_app": True,
        "quiet_hours_start": "22:00:00",
        "quiet_hours_end": "07:00:00",
        "urgent_override": False,
    }
    r = api.client.put(url, json=body, headers=api.auth())
    assert r.status_code == 200 and r.json()["sms"] is False
    assert api.client.get(url, headers=api.auth()).json()["quiet_hours_start"] == "22:00:00"
    assert api.client.get(url, headers=api.auth("patient-b")).json()["sms"] is True
    half = api.client.put(url, json={**body, "quiet_hours_end": None}, headers=api.auth())
    assert half.status_code == 422 and half.json()["error"]["fields"][0]["field"] == "body.quiet_hours_end"


def test_recommendations_and_notifications_are_mine(api) -> None:
    from booking_core.db.models import Notification, Package, Recommendation

    with api.sessions() as s:
        pkg = s.scalar(select(Package))
        s.add(Recommendation(patient_id="patient-a", package_id=pkg.id, rule_id="r1", reason="because"))
        s.add(Notification(patient_id="patient-a", kind="results_available", title="t", body="b"))
        s.commit()
    recs = api.client.get("/api/v1/recommendations", headers=api.auth("patient-a")).json()
    assert [r["package_code"] for r in recs] == ["DIABETES"]
    assert len(api.client.get("/api/v1/notifications", headers=api.auth("patient-a")).json()) == 1
    assert api.client.get("/api/v1/recommendations", headers=api.auth("patient-b")).json() == []
    assert api.client.get("/api/v1/notifications", headers=api.auth("patient-b")).json() == []


def test_lab_comments_are_shown_with_the_result(api) -> None:
    from booking_core.db.models import TestResult

    with api.sessions() as s:
        r = s.get(TestResult, api.world.result_a)
        r.comment = "Fasting sample"
        r.observations[0].comment = "Repeated and confirmed"
        s.commit()
    body = api.client.get(f"/api/v1/test-results/{api.world.result_a}", headers=api.auth()).json()
    assert body["comment"] == "Fasting sample"
    assert body["observations"][0]["comment"] == "Repeated and confirmed"
