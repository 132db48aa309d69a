"""Staff: clinics' weekly schedules and slots."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse

from booking_api.clinic_scope import ClinicStaffDep, ScheduleStaffDep, SlotStaffDep
from booking_api.deps import NowDep, SessionDep
from booking_api.errors import AUTHED, R404, R409, Responses
from booking_api.routes import API_PREFIX
from booking_api.schemas import (
    ScheduleCreate,
    SchedulePublic,
    SlotCreate,
    SlotGenerate,
    SlotGenerateResult,
    SlotStaff,
    SlotUpdate,
)
from booking_api.services import idempotency, staff

router = APIRouter(prefix=f"{API_PREFIX}/staff", tags=["staff"])
ClinicId = Annotated[str, Path(min_length=1, max_length=64)]
ObjId = Annotated[str, Path(min_length=1, max_length=64)]
# Optional for staff tools: without it a retry creates a second rule (or, for a slot, answers 409).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Unique per intended creation; a retry with the same key and body gets the first answer",
    ),
]
CREATED_OR_REPLAYED: Responses = {
    201: {
        "description": "Created, or the replay of the first answer for this Idempotency-Key",
        "headers": {"Idempotent-Replayed": {"description": "true on a replay", "schema": {"type": "string"}}},
    }
}


def _answer(outcome: idempotency.Outcome) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get(
    "/clinics/{clinic_id}/schedules", response_model=list[SchedulePublic], responses={**AUTHED, **R404}
)
def list_schedules(clinic_id: ClinicId, _: ClinicStaffDep, session: SessionDep) -> list[SchedulePublic]:
    """A clinic's weekly schedule rules."""
    return staff.list_schedules(session=session, clinic_id=clinic_id)


@router.post(
    "/clinics/{clinic_id}/schedules",
    status_code=201,
    response_model=SchedulePublic,
    responses={**AUTHED, **R404, **R409, **CREATED_OR_REPLAYED},
)
def create_schedule(
    clinic_id: ClinicId,
    data: ScheduleCreate,
    who: ClinicStaffDep,
    session: SessionDep,
    now: NowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Add a weekly rule (once per Idempotency-Key); generate its slots with POST .../slots/generate."""
    return _answer(
        staff.create_schedule(
            session=session,
            clinic_id=clinic_id,
            data=data,
            now=now,
            subject=who.subject,
            idempotency_key=idempotency_key,
        )
    )


@router.delete("/schedules/{schedule_id}", status_code=204, responses={**AUTHED, **R404})
def retire_schedule(schedule_id: ObjId, _: ScheduleStaffDep, session: SessionDep) -> Response:
    """Retire a rule: it produces no new slots; existing slots and bookings stay."""
    staff.retire_schedule(session=session, schedule_id=schedule_id)
    return Response(status_code=204)


@router.post(
    "/clinics/{clinic_id}/slots/generate",
    response_model=SlotGenerateResult,
    responses={**AUTHED, **R404, **R409},
)
def generate_slots(
    clinic_id: ClinicId, data: SlotGenerate, _: ClinicStaffDep, session: SessionDep, now: NowDep
) -> SlotGenerateResult:
    """Create the slots the clinic's active schedules give on these local dates (idempotent)."""
    return SlotGenerateResult(
        created=staff.generate_slots(session=session, clinic_id=clinic_id, data=data, now=now)
    )


@router.get("/clinics/{clinic_id}/slots", response_model=list[SlotStaff], responses={**AUTHED, **R404})
def list_slots(
    clinic_id: ClinicId,
    _: ClinicStaffDep,
    session: SessionDep,
    now: NowDep,
    date_from: Annotated[date | None, Query()] = None,
    date_to: Annotated[date | None, Query()] = None,
) -> list[SlotStaff]:
    """All of a clinic's slots in the UTC date range, full and closed ones included."""
    return staff.list_slots(
        session=session, clinic_id=clinic_id, now=now, date_from=date_from, date_to=date_to
    )


@router.post(
    "/clinics/{clinic_id}/slots",
    status_code=201,
    response_model=SlotStaff,
    responses={**AUTHED, **R404, **R409, **CREATED_OR_REPLAYED},
)
def create_slot(
    clinic_id: ClinicId,
    data: SlotCreate,
    who: ClinicStaffDep,
    session: SessionDep,
    now: NowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Add one slot by hand (once per Idempotency-Key)."""
    return _answer(
        staff.create_slot(
            session=session,
            clinic_id=clinic_id,
            data=data,
            now=now,
            subject=who.subject,
            idempotency_key=idempotency_key,
        )
    )


@router.patch("/slots/{slot_id}", response_model=SlotStaff, responses={**AUTHED, **R404, **R409})
def update_slot(slot_id: ObjId, data: SlotUpdate, _: SlotStaffDep, session: SessionDep) -> SlotStaff:
    """Change a slot's capacity (never below what is booked) or close/reopen it."""
    return staff.update_slot(session=session, slot_id=slot_id, data=data)
