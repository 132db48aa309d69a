"""A patient's bookings: create (Idempotency-Key), list, read, cancel, reschedule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse

from booking_api.deps import (
    DbWorkDep,
    NowDep,
    PatientDep,
    PatientTokenDep,
    SessionDep,
    SettingsDep,
)
from booking_api.errors import AUTHED, R404, R409, ApiError
from booking_api.metrics import record_booking
from booking_api.routes import API_PREFIX
from booking_api.schemas import BookingCreate, BookingPublic, BookingReschedule
from booking_api.services import accounts, bookings, my_bookings
from booking_core.domain.errors import DomainError

router = APIRouter(prefix=f"{API_PREFIX}/bookings", tags=["bookings"])
BookingId = Annotated[str, Path(min_length=1, max_length=64)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Unique per intended booking; a retry with the same key and body gets the first answer",
    ),
]


@contextmanager
def _counted(action: str) -> Iterator[None]:
    """Count a refused request by its error code; the route counts its own success."""
    try:
        yield
    except (DomainError, ApiError) as exc:
        record_booking(action, getattr(exc, "code", type(exc).__name__))
        raise


@router.post(
    "",
    status_code=201,
    response_model=BookingPublic,
    responses={
        **AUTHED,
        **R404,
        **R409,
        201: {
            "description": "Booked (pending confirmation), or the replay of the first answer for this key",
            "headers": {
                "Idempotent-Replayed": {"description": "true on a replay", "schema": {"type": "string"}}
            },
        },
    },
)
def create_booking(
    data: BookingCreate,
    patient: PatientTokenDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    idempotency_key: IdempotencyKey,
) -> JSONResponse:
    """Book a place on a slot; never overbooks. Requires an Idempotency-Key header."""
    # A plain `def` on the thread pool, not booking_api.dbwork's event-loop path: on this shared 2-core
    # machine that path served fewer bookings per second (6 runs against 4, docs/performance.md) at the
    # same CPU per request. PatientDep's account check is made by the Idempotency-Key claim, in the same
    # round trip (booking_api.services.idempotency).
    with _counted("create"):
        result = bookings.create_booking(
            session=session,
            patient_id=patient.subject,
            data=data,
            idempotency_key=idempotency_key,
            now=now,
            hold_ttl=timedelta(minutes=settings.hold_ttl_minutes),
        )
    record_booking("create", "replayed" if result.replayed else "created")
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, status_code=result.status_code, headers=headers)


@router.get("", response_model=list[BookingPublic], responses=AUTHED)
async def list_bookings(
    patient: PatientTokenDep, db: DbWorkDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> Response:
    """My bookings, latest appointment first."""
    # Awaited on the event loop like the slot search: no thread-pool hop, no transaction, no ORM objects.
    params = {"patient_id": patient.subject, "limit": limit}
    account = await db.fetch_all(accounts.ACTIVE, params)
    if account and accounts.is_deactivated(account[0][0]):
        raise accounts.deactivated_error()
    rows = await db.fetch_all(my_bookings.my_bookings_statement(), params)
    return Response(my_bookings.bookings_json(rows), media_type="application/json")


@router.get("/{booking_id}", response_model=BookingPublic, responses={**AUTHED, **R404})
def get_booking(booking_id: BookingId, patient: PatientDep, session: SessionDep) -> BookingPublic:
    """One of my bookings."""
    return bookings.get_booking(session=session, patient_id=patient.subject, booking_id=booking_id)


@router.post("/{booking_id}/cancel", response_model=BookingPublic, responses={**AUTHED, **R404, **R409})
def cancel_booking(
    booking_id: BookingId, patient: PatientDep, session: SessionDep, settings: SettingsDep, now: NowDep
) -> BookingPublic:
    """Cancel one of my bookings (until the cancellation notice period); cancelling twice is harmless."""
    with _counted("cancel"):
        out = bookings.cancel_booking(
            session=session,
            patient_id=patient.subject,
            booking_id=booking_id,
            now=now,
            notice=timedelta(hours=settings.cancel_notice_hours),
        )
    record_booking("cancel", "cancelled")
    return out


@router.post("/{booking_id}/reschedule", response_model=BookingPublic, responses={**AUTHED, **R404, **R409})
def reschedule_booking(
    booking_id: BookingId,
    data: BookingReschedule,
    patient: PatientDep,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> BookingPublic:
    """Move one of my bookings to another slot of the same service (until the notice period)."""
    with _counted("reschedule"):
        out = bookings.reschedule_booking(
            session=session,
            patient_id=patient.subject,
            booking_id=booking_id,
            data=data,
            now=now,
            notice=timedelta(hours=settings.reschedule_notice_hours),
        )
    record_booking("reschedule", "rescheduled")
    return out
