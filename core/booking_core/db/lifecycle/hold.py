"""A new booking: the patient asks for a place (pending, one place taken, an active hold).

The API's busiest write, so it is prepared Core statements (hold_sql.py) rather than ORM units of work:
one read (the slot under its lock, with the patient's account) and, on PostgreSQL, one write of
data-modifying CTEs. `hold_plan` is the one definition, as a plan of statements (booking_core.db.steps)
that a Session (`hold_booking`) or the API's asyncpg connections run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_core.db import steps
from booking_core.db.lifecycle.hold_sql import (
    OUTBOX_COLUMNS,
    PACKAGE_ID,
    PATIENT_ACTIVE,
    SLOT_FOR_HOLD,
    SLOT_READ,
    hold_writes,
)
from booking_core.db.models import new_id
from booking_core.db.notify_outbox import add_notice
from booking_core.db.session import begin_write
from booking_core.db.steps import Plan, Step
from booking_core.domain import lifecycle as agg
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.errors import (
    AlreadyBookedError,
    InvalidValueError,
    NotFoundError,
    NotPermittedError,
    SlotUnavailableError,
)
from booking_core.domain.holds import HoldStatus
from booking_core.outbox import outbox_row


@dataclass(frozen=True)
class HeldBooking:
    """A new pending booking and its hold, as `hold_booking` wrote them (plain values, no ORM rows)."""

    id: str
    patient_id: str
    status: str
    slot_id: str
    clinic_id: str
    service_code: str
    package_code: str | None
    starts_at: datetime
    ends_at: datetime
    hold_expires_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class HoldOutcome:
    """What `hold_plan` decided and wrote: the booking, and the notices its caller must stage (none for a
    hold today; `hold_booking` stages them with the session)."""

    held: HeldBooking
    notices: tuple[agg.NoticeIntent, ...]
    cause: str


def _slot_view(row: Sequence[Any]) -> agg.SlotView:
    return agg.SlotView(
        id=row[0],
        clinic_id=row[1],
        service_id=row[2],
        service_code=row[3],
        starts_at=row[4],
        ends_at=row[5],
        capacity=row[6],
        booked=row[7],
        open=row[8] == "open",
    )


def hold_plan(
    dialect: str,
    *,
    patient_id: str,
    slot_id: str,
    package_code: str | None,
    now: datetime,
    hold_ttl: timedelta,
    also: Callable[[HeldBooking], tuple[Any, dict[str, Any]]] | None = None,
    read: Sequence[Any] | None = None,
    conditional: bool = False,
) -> Plan[HoldOutcome]:
    """A patient asks for a place: a pending booking, one place taken, an active hold (booking_core.db.steps).

    The one definition of a new booking, run by `hold_booking` on a SQLAlchemy connection and by the API
    on asyncpg (booking_api.dbwork); the caller has opened the write transaction (`begin_write`).

    `also` may give a write of the caller's own, (statement, parameters), made from the new booking: it
    runs with the booking's rows, in the same round trip on PostgreSQL (the API stores its answer for the
    Idempotency-Key so). Its parameter names must not clash with ours (b_, h_, s_, o<n>_, r_, slot_id).
    `read` is the row of `locked_slot_read` (or of `slot_read`) when the caller made the read in its own
    statement.

    `conditional` (PostgreSQL, outside a transaction): the slot is read without a lock and the write
    takes the place only if the slot is still as read, writing nothing otherwise (`hold_writes`): read,
    decide and one conditional write, two autocommit round trips and no lock held between them. The
    rules are the same: the decision is the aggregate's, the place is taken by `booked < capacity` on
    the row, and a slot that changed meanwhile is SlotUnavailableError as a full one is.

    The busiest write of the API, so it is prepared Core statements, not ORM units of work: one read (the
    slot under its lock, with the patient's state) and, on PostgreSQL, one write (`hold_writes`).
    """
    if read is None:
        first_read = SLOT_READ if conditional else SLOT_FOR_HOLD
        found = yield Step(first_read, {"slot_id": slot_id, "patient_id": patient_id}, "row")
    else:  # the caller read it with `locked_slot_read` (all nulls: no such slot)
        found = read if read[0] is not None else None
    patient_active = (
        found[9] if found is not None else (yield Step(PATIENT_ACTIVE, {"patient_id": patient_id}, "scalar"))
    )
    if patient_active is None:
        raise NotPermittedError("the patient is not registered", code="patient_not_registered")
    if found is None:
        raise NotFoundError("slot", slot_id)
    slot = _slot_view(found)
    package_id: str | None = None
    if package_code is not None:
        package_id = yield Step(PACKAGE_ID, {"package_code": package_code}, "scalar")
        if package_id is None:
            raise InvalidValueError("body.package_code", "unknown or inactive package")
    booking_id = new_id()
    d = agg.hold(
        booking_id=booking_id,
        patient_id=patient_id,
        patient_active=patient_active,
        slot=slot,
        package_code=package_code,
        now=now,
        hold_ttl=hold_ttl,
    )
    assert d.take is not None and d.new_hold_expires_at is not None
    if conditional and d.notices:
        # Notices are staged with a session (notify_outbox.add_notice); a conditional write has none.
        raise ValueError("a hold that owes notices cannot be written conditionally")
    status = BookingStatus.PENDING.value
    events = [outbox_row(event, occurred_at=now) for event in d.events]
    params: dict[str, Any] = {
        "slot_id": slot.id,
        "b_id": booking_id,
        "b_patient_id": patient_id,
        "b_slot_id": slot.id,
        "b_clinic_id": slot.clinic_id,
        "b_service_id": slot.service_id,
        "b_package_id": package_id,
        "b_status": status,
        "b_starts_at": slot.starts_at,
        "b_ends_at": slot.ends_at,
        "b_version": 1,
        "b_created_at": now,
        "b_updated_at": now,
        "h_id": new_id(),
        "h_status": HoldStatus.ACTIVE.value,
        "h_slot_id": slot.id,
        "h_patient_id": patient_id,
        "h_booking_id": booking_id,
        "h_created_at": now,
        "h_expires_at": d.new_hold_expires_at,
        "s_booking_id": booking_id,
        "s_from_status": None,
        "s_to_status": status,
        "s_reason": "requested",
        "s_actor": "patient",
        "s_at": now,
    }
    for i, event in enumerate(events):
        params.update({f"o{i}_{k}": event[k] for k in OUTBOX_COLUMNS if k != "attempts"})
        params[f"o{i}_attempts"] = 0
    held = HeldBooking(
        id=booking_id,
        patient_id=patient_id,
        status=status,
        slot_id=slot.id,
        clinic_id=slot.clinic_id,
        service_code=slot.service_code,
        package_code=package_code,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        hold_expires_at=d.new_hold_expires_at,
        created_at=now,
    )
    extra: Any = None
    if also is not None:
        extra, extra_params = also(held)
        if clash := params.keys() & extra_params.keys():
            raise ValueError(f"parameter names taken by the hold's own writes: {sorted(clash)}")
        params.update(extra_params)
    # Take one place and insert the rows. The slot row is locked already, so the place cannot go
    # meanwhile: the condition on `booked` is the write's own check of the state it expects.
    if conditional:
        params.update(
            r_starts_at=slot.starts_at,
            r_ends_at=slot.ends_at,
            r_clinic_id=slot.clinic_id,
            r_service_id=slot.service_id,
        )
    first, *rest = hold_writes(dialect, len(events), extra, conditional)
    try:
        # A conditional write is one statement, one row (the places it took), right on its own: other
        # creates' may ride with it, in the order of the slots they lock (booking_core.db.steps.Step).
        taken = yield Step(first, params, "count" if rest else "scalar", "slot_id" if conditional else None)
        if taken == 1:
            for stmt in rest:
                yield Step(stmt, params, "none")
    except IntegrityError as exc:
        if not _already_booked(exc):
            raise
        raise AlreadyBookedError("you already have a booking on this slot") from exc
    if taken != 1:
        raise SlotUnavailableError(slot.id)
    return HoldOutcome(held, tuple(d.notices), events[0]["event_id"] if events else "")


def hold_booking(
    session: Session,
    *,
    patient_id: str,
    slot_id: str,
    package_code: str | None,
    now: datetime,
    hold_ttl: timedelta,
    also: Callable[[HeldBooking], tuple[Any, dict[str, Any]]] | None = None,
) -> HeldBooking:
    """`hold_plan` in the session's write transaction, its notices staged (see `hold_plan`)."""
    begin_write(session)
    outcome = steps.run(
        session.connection(),
        hold_plan(
            session.connection().dialect.name,
            patient_id=patient_id,
            slot_id=slot_id,
            package_code=package_code,
            now=now,
            hold_ttl=hold_ttl,
            also=also,
        ),
    )
    stage_notices(session, outcome, now=now)
    return outcome.held


def stage_notices(session: Session, outcome: HoldOutcome, *, now: datetime) -> None:
    """Stage the notices a hold owes in the session's transaction (booking_core.db.notify_outbox)."""
    for notice in outcome.notices:
        add_notice(session, notice, cause=outcome.cause, now=now)


def _already_booked(exc: IntegrityError) -> bool:
    """Whether the error is the one-live-booking-per-patient-and-slot index (PostgreSQL or SQLite wording)."""
    text = str(exc.orig)
    return "uq_bookings_patient_slot_active" in text or "bookings.patient_id, bookings.slot_id" in text
