"""A patient's own records: test results (audit-logged), recommendations, inbox and preferences."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking_api.schemas import (
    NotificationPreferencesPublic,
    NotificationPreferencesUpdate,
    NotificationPublic,
    RecommendationPublic,
    TestResultPublic,
    TestResultSummary,
)
from booking_api.services.views import result_public, result_summary
from booking_core.db.models import (
    Notification,
    NotificationPreference,
    Patient,
    PhiAuditLog,
    Recommendation,
    TestResult,
)
from booking_core.domain import notifications as prefs_rules
from booking_core.domain.errors import NotFoundError, NotPermittedError


def _audit(
    session: Session,
    *,
    actor: str,
    patient_id: str,
    resource_type: str,
    resource_id: str,
    action: str,
    now: datetime,
    request_id: str | None,
) -> None:
    session.add(
        PhiAuditLog(
            actor=actor,
            patient_id=patient_id,
            resource_type=resource_type,
            resource_id=resource_id,
            action=action,
            at=now,
            request_id=request_id,
        )
    )


def list_results(
    *,
    session: Session,
    patient_id: str,
    actor: str,
    now: datetime,
    request_id: str | None = None,
    limit: int = 100,
) -> list[TestResultSummary]:
    """The patient's released reports, newest first; the read is audit-logged."""
    rows = session.scalars(
        select(TestResult)
        .where(
            TestResult.patient_id == patient_id,
            TestResult.visible_to_patient,
            TestResult.status != "entered-in-error",
        )
        .order_by(TestResult.issued_at.desc(), TestResult.id)
        .limit(limit)
    ).all()
    out = [result_summary(r) for r in rows]
    _audit(
        session,
        actor=actor,
        patient_id=patient_id,
        resource_type="DiagnosticReport",
        resource_id="*",
        action="list",
        now=now,
        request_id=request_id,
    )
    session.commit()
    return out


def get_result(
    *,
    session: Session,
    patient_id: str,
    result_id: str,
    actor: str,
    now: datetime,
    request_id: str | None = None,
) -> TestResultPublic:
    """One released report of the patient with its observations; audit-logged; 404 for anyone else's."""
    r = session.scalar(
        select(TestResult).where(
            TestResult.id == result_id,
            TestResult.patient_id == patient_id,
            TestResult.visible_to_patient,
            TestResult.status != "entered-in-error",
        )
    )
    if r is None:
        raise NotFoundError("test result", result_id)
    out = result_public(r)
    _audit(
        session,
        actor=actor,
        patient_id=patient_id,
        resource_type="DiagnosticReport",
        resource_id=r.id,
        action="read",
        now=now,
        request_id=request_id,
    )
    session.commit()
    return out


def list_recommendations(
    *, session: Session, patient_id: str, limit: int = 100
) -> list[RecommendationPublic]:
    """The patient's open recommendations, newest first."""
    rows = session.scalars(
        select(Recommendation)
        .where(Recommendation.patient_id == patient_id, Recommendation.dismissed_at.is_(None))
        .order_by(Recommendation.created_at.desc(), Recommendation.id)
        .limit(limit)
    )
    return [
        RecommendationPublic(
            id=r.id,
            package_code=r.package.code,
            package_name=r.package.name,
            reason=r.reason,
            rule_id=r.rule_id,
            created_at=r.created_at,
        )
        for r in rows
    ]


def list_notifications(*, session: Session, patient_id: str, limit: int = 100) -> list[NotificationPublic]:
    """The patient's in-app inbox, newest first."""
    rows = session.scalars(
        select(Notification)
        .where(Notification.patient_id == patient_id)
        .order_by(Notification.created_at.desc(), Notification.id)
        .limit(limit)
    )
    return [NotificationPublic.model_validate(n) for n in rows]


DEFAULT_PREFERENCES = NotificationPreferencesPublic(
    email=True,
    sms=True,
    push=True,
    in_app=True,
    quiet_hours_start=None,
    quiet_hours_end=None,
    urgent_override=True,
)


def get_preferences(*, session: Session, patient_id: str) -> NotificationPreferencesPublic:
    """The patient's preferences (defaults when never set)."""
    row = session.get(NotificationPreference, patient_id)
    return NotificationPreferencesPublic.model_validate(row) if row else DEFAULT_PREFERENCES


def put_preferences(
    *, session: Session, patient_id: str, data: NotificationPreferencesUpdate, now: datetime
) -> NotificationPreferencesPublic:
    """Replace the patient's preferences."""
    prefs_rules.Preferences(**data.model_dump())  # domain validation: quiet hours need both ends
    if session.get(Patient, patient_id) is None:
        raise NotPermittedError("the patient is not registered", code="patient_not_registered")
    row = session.get(NotificationPreference, patient_id)
    if row is None:
        row = NotificationPreference(patient_id=patient_id)
        session.add(row)
    for key, value in data.model_dump().items():
        setattr(row, key, value)
    row.updated_at = now
    session.commit()
    return NotificationPreferencesPublic.model_validate(row)
