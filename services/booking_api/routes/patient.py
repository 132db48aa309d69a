"""A patient's own records: test results, recommendations, notifications, preferences."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query

from booking_api.deps import NowDep, PatientDep, SessionDep
from booking_api.errors import AUTHED, R404
from booking_api.routes import API_PREFIX
from booking_api.schemas import (
    NotificationPreferencesPublic,
    NotificationPreferencesUpdate,
    NotificationPublic,
    RecommendationPublic,
    TestResultPublic,
    TestResultSummary,
)
from booking_api.services import patient_data

router = APIRouter(prefix=API_PREFIX, tags=["patient"])
Limit = Annotated[int, Query(ge=1, le=500)]
RequestId = Annotated[str | None, Header(alias="X-Request-ID", max_length=64)]


@router.get("/test-results", response_model=list[TestResultSummary], responses=AUTHED)
def list_results(
    patient: PatientDep, session: SessionDep, now: NowDep, request_id: RequestId = None, limit: Limit = 100
) -> list[TestResultSummary]:
    """My released test results, newest first (the read is audit-logged)."""
    return patient_data.list_results(
        session=session,
        patient_id=patient.subject,
        actor=patient.actor,
        now=now,
        request_id=request_id,
        limit=limit,
    )


@router.get("/test-results/{result_id}", response_model=TestResultPublic, responses={**AUTHED, **R404})
def get_result(
    result_id: Annotated[str, Path(min_length=1, max_length=64)],
    patient: PatientDep,
    session: SessionDep,
    now: NowDep,
    request_id: RequestId = None,
) -> TestResultPublic:
    """One of my test results with its values (the read is audit-logged)."""
    return patient_data.get_result(
        session=session,
        patient_id=patient.subject,
        result_id=result_id,
        actor=patient.actor,
        now=now,
        request_id=request_id,
    )


@router.get("/recommendations", response_model=list[RecommendationPublic], responses=AUTHED)
def list_recommendations(
    patient: PatientDep, session: SessionDep, limit: Limit = 100
) -> list[RecommendationPublic]:
    """Packages recommended to me, and why."""
    return patient_data.list_recommendations(session=session, patient_id=patient.subject, limit=limit)


@router.get("/notifications", response_model=list[NotificationPublic], responses=AUTHED)
def list_notifications(
    patient: PatientDep, session: SessionDep, limit: Limit = 100
) -> list[NotificationPublic]:
    """My in-app inbox, newest first."""
    return patient_data.list_notifications(session=session, patient_id=patient.subject, limit=limit)


@router.get("/me/notification-preferences", response_model=NotificationPreferencesPublic, responses=AUTHED)
def get_preferences(patient: PatientDep, session: SessionDep) -> NotificationPreferencesPublic:
    """My notification channels and quiet hours."""
    return patient_data.get_preferences(session=session, patient_id=patient.subject)


@router.put("/me/notification-preferences", response_model=NotificationPreferencesPublic, responses=AUTHED)
def put_preferences(
    data: NotificationPreferencesUpdate, patient: PatientDep, session: SessionDep, now: NowDep
) -> NotificationPreferencesPublic:
    """Replace my notification channels and quiet hours."""
    return patient_data.put_preferences(session=session, patient_id=patient.subject, data=data, now=now)
