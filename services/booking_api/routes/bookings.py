"""A patient's bookings: create (Idempotency-Key), list, read, cancel, reschedule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from booking_api.dbwork import DbWork
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
from booking_api.routes.create_fast import booking_create_route
from booking_api.schemas import BookingCreate, BookingPublic, BookingReschedule
from booking_api.services import accounts, bookings, my_bookings
from booking_api.settings import ApiSettings
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


async def create(
    request: Request, patient_id: str, data: BookingCreate, idempotency_key: str, now: datetime
) -> JSONResponse:
    """The create's answer, for FastAPI's path and the plain one alike (routes/create_fast.py).

    On PostgreSQL it is awaited on the event loop through asyncpg (booking_api.dbwork), as the slot search
    is: no thread-pool hop, no ORM session, statements compiled once. SQLite (the embedded mode) runs the
    same plan on a session on the thread pool. The patient's account is checked by the Idempotency-Key
    claim, in the same round trip (booking_api.services.idempotency).
    """
    settings: ApiSettings = request.app.state.settings
    db: DbWork = request.app.state.db_work
    hold_ttl = timedelta(minutes=settings.hold_ttl_minutes)
    with _counted("create"):
        if db.on_loop:
            result = await bookings.create_booking_on_loop(
                db,
                patient_id=patient_id,
                data=data,
                idempotency_key=idempotency_key,
                now=now,
                hold_ttl=hold_ttl,
            )
        else:
            result = await run_in_threadpool(
                _create_in_session,
                request.app.state.session_factory,
                patient_id=patient_id,
                data=data,
                idempotency_key=idempotency_key,
                now=now,
                hold_ttl=hold_ttl,
            )
    record_booking("create", "replayed" if result.replayed else "created")
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, status_code=result.status_code, headers=headers)


def _create_in_session(factory: sessionmaker[Session], **kwargs: Any) -> bookings.CreateResult:
    with factory() as session:
        return bookings.create_booking(session=session, **kwargs)


async def create_booking(
    request: Request,
    data: BookingCreate,
    patient: PatientTokenDep,
    now: NowDep,
    idempotency_key: IdempotencyKey,
) -> JSONResponse:
    """Book a place on a slot; never overbooks. Requires an Idempotency-Key header."""
    return await create(request, patient.subject, data, idempotency_key, now)


router.add_api_route(
    "",
    create_booking,
    methods=["POST"],
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
    # Plain requests are read without FastAPI's per-request dependency solving (routes/create_fast.py).
    route_class_override=booking_create_route(create),
)


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
