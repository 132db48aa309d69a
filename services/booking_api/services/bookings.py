"""Booking use cases: create (no overbooking, idempotent), list, read, cancel, reschedule.

Each state change is one call of the booking unit of work (booking_core.db.lifecycle) and one commit:
the booking, the slot counts, the hold, the history, the outbox event and the notice it owes (the
notice dispatcher in the workers hands it to the broker, woken by this commit). Errors are domain
errors; booking_api.errors translates them to HTTP once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_api.dbwork import DbWork
from booking_api.schemas import BookingCreate, BookingPublic, BookingReschedule
from booking_api.services import idempotency
from booking_api.services.views import booking_public, held_public
from booking_core.db import lifecycle, steps
from booking_core.db.models import Booking, Hold
from booking_core.db.session import begin_write, rollback_on_error
from booking_core.db.steps import Plan
from booking_core.domain.errors import NotFoundError
from booking_core.domain.holds import HoldStatus

log = logging.getLogger(__name__)

CREATE_ROUTE = "POST /api/v1/bookings"


@dataclass(frozen=True)
class CreateResult:
    """The answer to POST /bookings and whether it is a replay of an earlier one."""

    status_code: int
    body: dict[str, object]
    replayed: bool


def create_plan(
    dialect: str,
    *,
    patient_id: str,
    data: BookingCreate,
    idempotency_key: str,
    now: datetime,
    hold_ttl: timedelta,
) -> Plan[tuple[CreateResult, lifecycle.HoldOutcome | None]]:
    """A booking create as statements (booking_core.db.steps): the Idempotency-Key claim (with the
    patient's account), then the lifecycle's hold with the answer stored in its write. The outcome is None
    for a replay. Run on a session by `create_booking`, on asyncpg by `create_booking_on_loop`."""
    body = data.model_dump(mode="json")
    claimed = yield from idempotency.claim_plan(
        dialect,
        subject=patient_id,
        key=idempotency_key,
        fingerprint=idempotency.request_hash(CREATE_ROUTE, body),
        now=now,
        check_account=True,
        # On PostgreSQL the hold's locked read rides in the claim's statement: one round trip fewer.
        then=lifecycle.locked_slot_read,
        then_params={"slot_id": data.slot_id},
    )
    if isinstance(claimed, idempotency.StoredResponse):
        return CreateResult(status_code=claimed.status_code, body=claimed.body, replayed=True), None
    answer: dict[str, object] = {}

    def store_answer(held: lifecycle.HeldBooking) -> tuple[Any, dict[str, Any]]:
        # The answer is known before the booking's rows are written: stored in the same round trip.
        answer.update(held_public(held).model_dump(mode="json"))
        return idempotency.record_write(claimed, status_code=201, body=answer)

    outcome = yield from lifecycle.hold_plan(
        dialect,
        patient_id=patient_id,
        slot_id=data.slot_id,
        package_code=data.package_code,
        now=now,
        hold_ttl=hold_ttl,
        also=store_answer,
        read=claimed.read,
    )
    return CreateResult(status_code=201, body=answer, replayed=False), outcome


def create_booking(
    *,
    session: Session,
    patient_id: str,
    data: BookingCreate,
    idempotency_key: str,
    now: datetime,
    hold_ttl: timedelta,
) -> CreateResult:
    """Book a place on a slot for the patient: pending, capacity held, `booking.requested` in the outbox."""
    with rollback_on_error(session):
        begin_write(session)
        conn = session.connection()
        plan = create_plan(
            conn.dialect.name,
            patient_id=patient_id,
            data=data,
            idempotency_key=idempotency_key,
            now=now,
            hold_ttl=hold_ttl,
        )
        result, outcome = steps.run(conn, plan)
        if outcome is not None:
            lifecycle.stage_notices(session, outcome, now=now)
        session.commit()
    return result


def conditional_create_plan(
    *,
    patient_id: str,
    data: BookingCreate,
    idempotency_key: str,
    now: datetime,
    hold_ttl: timedelta,
) -> Plan[tuple[CreateResult, lifecycle.HoldOutcome | None]]:
    """A booking create on PostgreSQL outside a transaction: one read (the account, the key's stored
    answer, the slot), the aggregate's decision, and the lifecycle's conditional write with the key row
    and its answer (booking_core.db.lifecycle.hold_plan(conditional=True)). Two round trips, no BEGIN or
    COMMIT, no lock held across a round trip.

    The same outcomes as `create_plan`: a replay answers the stored answer; a retry racing the first
    request with the same key fails on the key's unique index once the first commits, writing nothing,
    and replays it; a slot taken or changed meanwhile is 409 (the write takes the place only from the
    slot as read, `booked < capacity` on the row). Both statements may be sent with the same statements
    of concurrent creates, in one round trip (booking_api.pipeline): each is right on its own.
    """
    body = data.model_dump(mode="json")
    fingerprint = idempotency.request_hash(CREATE_ROUTE, body)
    looked = yield from idempotency.lookup_plan(
        subject=patient_id,
        key=idempotency_key,
        fingerprint=fingerprint,
        beside=lifecycle.slot_read,
        beside_params={"slot_id": data.slot_id},
        batch_by="slot_id",
    )
    if isinstance(looked, idempotency.StoredResponse):
        return CreateResult(status_code=looked.status_code, body=looked.body, replayed=True), None
    answer: dict[str, object] = {}

    def store_answer(held: lifecycle.HeldBooking) -> tuple[Any, dict[str, Any]]:
        answer.update(held_public(held).model_dump(mode="json"))
        return idempotency.answer_insert(
            subject=patient_id,
            key=idempotency_key,
            fingerprint=fingerprint,
            now=now,
            status_code=201,
            body=answer,
        )

    try:
        outcome = yield from lifecycle.hold_plan(
            "postgresql",
            patient_id=patient_id,
            slot_id=data.slot_id,
            package_code=data.package_code,
            now=now,
            hold_ttl=hold_ttl,
            also=store_answer,
            read=looked.read,
            conditional=True,
        )
    except IntegrityError as exc:  # the lifecycle passes on what is not its own unique index
        if not idempotency.key_taken(exc):
            raise
        stored = yield from idempotency.replay_plan(
            subject=patient_id, key=idempotency_key, fingerprint=fingerprint
        )
        return CreateResult(status_code=stored.status_code, body=stored.body, replayed=True), None
    return CreateResult(status_code=201, body=answer, replayed=False), outcome


async def create_booking_on_loop(
    db: DbWork,
    *,
    patient_id: str,
    data: BookingCreate,
    idempotency_key: str,
    now: datetime,
    hold_ttl: timedelta,
) -> CreateResult:
    """`create_booking` awaited on the event loop through asyncpg (PostgreSQL only: `db.on_loop`).

    The same plan, so the same statements and rules; only the driver differs (booking_api.dbwork).
    """
    plan = conditional_create_plan(
        patient_id=patient_id,
        data=data,
        idempotency_key=idempotency_key,
        now=now,
        hold_ttl=hold_ttl,
    )
    # A conditional hold refuses a decision with notices before writing (this driver has no session to
    # stage them with; a hold owes none today).
    result, _ = await db.steps().run(plan)
    return result


def _active_hold(session: Session, booking_id: str) -> Hold | None:
    return session.scalar(
        select(Hold).where(Hold.booking_id == booking_id, Hold.status == HoldStatus.ACTIVE.value)
    )


def _own_booking(session: Session, patient_id: str, booking_id: str) -> Booking:
    # Someone else's booking is indistinguishable from a missing one.
    stmt = select(Booking).where(Booking.id == booking_id, Booking.patient_id == patient_id)
    booking = session.scalar(stmt)
    if booking is None:
        raise NotFoundError("booking", booking_id)
    return booking


def get_booking(*, session: Session, patient_id: str, booking_id: str) -> BookingPublic:
    """One of the patient's bookings; 404 for anyone else's."""
    booking = _own_booking(session, patient_id, booking_id)
    return booking_public(booking, _active_hold(session, booking.id))


def cancel_booking(
    *, session: Session, patient_id: str, booking_id: str, now: datetime, notice: timedelta
) -> BookingPublic:
    """Cancel the patient's booking, freeing its place; a cancelled booking answers as it is (no change)."""
    with rollback_on_error(session):
        booking = lifecycle.cancel_booking(
            session,
            booking_id=booking_id,
            by="patient",
            actor="patient",
            now=now,
            patient_id=patient_id,
            notice=notice,
        )
        session.commit()
    session.refresh(booking)
    return booking_public(booking)


def reschedule_booking(
    *,
    session: Session,
    patient_id: str,
    booking_id: str,
    data: BookingReschedule,
    now: datetime,
    notice: timedelta,
) -> BookingPublic:
    """Move the patient's booking to another slot of the same service (same slot again: no change)."""
    with rollback_on_error(session):
        booking = lifecycle.reschedule_booking(
            session,
            booking_id=booking_id,
            new_slot_id=data.slot_id,
            actor="patient",
            now=now,
            patient_id=patient_id,
            notice=notice,
        )
        session.commit()
    session.refresh(booking)
    return booking_public(booking, _active_hold(session, booking.id))
