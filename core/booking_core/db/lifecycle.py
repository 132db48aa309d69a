"""The booking unit of work: read under locks, let the aggregate decide, write with conditional updates.

This module and `booking_core.domain.lifecycle` are the only code that changes a booking's status or a
slot's `booked` count (tests/core/test_single_owner.py checks it). The API, the consumers and the cron call
the use cases below inside their own transaction and commit; one call is one transition of one booking.

Why it cannot overbook or leak a place, on PostgreSQL and on SQLite alike:
- `begin_write` opens the transaction before the first read. On SQLite pysqlite would otherwise open it
  at the first write, after the reads it depends on; `BEGIN IMMEDIATE` takes SQLite's single write lock
  up front, so writers queue and each one reads what the previous one committed (FOR UPDATE is ignored
  there). On PostgreSQL the rows are locked instead.
- One lock order everywhere: the booking's row, then its slots in id order, then its hold.
- Every write checks the state it expects: the booking's status and version, `booked < capacity` for a
  place taken, `booked > 0` for a place freed, the hold still active. A write that finds another state
  raises ConcurrentChangeError (or SlotUnavailableError) and the caller's transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Result, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Clinic,
    Hold,
    OutboxMessage,
    Package,
    Patient,
    Service,
    Slot,
    new_id,
)
from booking_core.db.notify_outbox import add_notice
from booking_core.db.session import begin_write
from booking_core.domain import lifecycle as agg
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.errors import (
    AlreadyBookedError,
    ConcurrentChangeError,
    InvalidValueError,
    NotFoundError,
    NotPermittedError,
    SlotUnavailableError,
)
from booking_core.domain.holds import HoldStatus
from booking_core.events.recommendations import RecommendationRequested
from booking_core.outbox import add_event, outbox_row


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def lock_booking(session: Session, booking_id: str, patient_id: str | None = None) -> Booking:
    """The booking, row-locked until commit; NotFoundError when missing (or someone else's)."""
    stmt = select(Booking.id).where(Booking.id == booking_id)
    if patient_id is not None:
        # Someone else's booking is indistinguishable from a missing one.
        stmt = stmt.where(Booking.patient_id == patient_id)
    # The lock is taken on the bare row: with the eager joins (slot, package) in the locking query,
    # PostgreSQL would re-check a concurrently moved booking against its old slot row and drop it.
    if session.scalar(stmt.with_for_update()) is None:
        raise NotFoundError("booking", booking_id)
    booking = session.get(Booking, booking_id, populate_existing=True)
    assert booking is not None
    return booking


def _lock_slots(session: Session, ids: Sequence[str]) -> dict[str, Slot]:
    stmt = (
        select(Slot)
        .where(Slot.id.in_(sorted(set(ids))))
        .order_by(Slot.id)
        .with_for_update(of=Slot)
        .execution_options(populate_existing=True)
    )
    return {s.id: s for s in session.scalars(stmt).unique()}


def _slot_view(slot: Slot) -> agg.SlotView:
    return agg.SlotView(
        id=slot.id,
        clinic_id=slot.clinic_id,
        service_id=slot.service_id,
        service_code=slot.service.code,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        capacity=slot.capacity,
        booked=slot.booked,
        open=slot.status == "open",
    )


def _hold(session: Session, booking_id: str) -> Hold | None:
    # The latest hold: a booking has one, created with it.
    return session.scalars(
        select(Hold)
        .where(Hold.booking_id == booking_id)
        .order_by(Hold.created_at.desc())
        .execution_options(populate_existing=True)
    ).first()


def _view(booking: Booking, slot: Slot, hold: Hold | None) -> agg.BookingView:
    return agg.BookingView(
        id=booking.id,
        patient_id=booking.patient_id,
        status=BookingStatus(booking.status),
        slot=_slot_view(slot),
        version=booking.version,
        hold_status=HoldStatus(hold.status) if hold is not None else None,
        hold_expires_at=hold.expires_at if hold is not None else None,
        package_code=booking.package.code if booking.package is not None else None,
    )


class Loaded:
    """A booking read under its locks, ready for the aggregate."""

    def __init__(
        self, session: Session, booking_id: str, *, patient_id: str | None, also: str | None
    ) -> None:
        begin_write(session)
        self.booking = lock_booking(session, booking_id, patient_id)
        wanted = [self.booking.slot_id] + ([also] if also else [])
        self.slots = _lock_slots(session, wanted)
        self.hold = _hold(session, booking_id)
        self.view = _view(self.booking, self.slots[self.booking.slot_id], self.hold)


def _take(session: Session, slot_id: str) -> None:
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked < Slot.capacity, Slot.status == "open")
        .values(booked=Slot.booked + 1)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(won) != 1:
        raise SlotUnavailableError(slot_id)


def _free(session: Session, slot_id: str) -> None:
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked > 0)
        .values(booked=Slot.booked - 1)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(won) != 1:
        raise ConcurrentChangeError("the slot has no place to give back")


def _apply(
    session: Session, booking: Booking, view: agg.BookingView, d: agg.Decision, *, actor: str, now: datetime
) -> None:
    """Write one decision on an existing booking: booking row, places, hold, history, events, notices."""
    if not d.changed or d.to_status is None:
        return
    values: dict[str, Any] = {"status": d.to_status.value, "version": Booking.version + 1, "updated_at": now}
    if d.to_status is BookingStatus.CANCELLED:
        values["cancel_reason"] = d.reason
    if d.move is not None:
        new = d.move.new
        values.update(
            slot_id=new.id,
            clinic_id=new.clinic_id,
            starts_at=new.starts_at,
            ends_at=new.ends_at,
            # Re-armed: the reminders name the new time.
            reminder_24h_sent_at=None,
            reminder_2h_sent_at=None,
        )
    # Places first, in slot id order, so two moves in opposite directions cannot deadlock.
    steps = [(s.id, +1) for s in [d.take] if s is not None] + [(s.id, -1) for s in [d.free] if s is not None]
    for slot_id, delta in sorted(steps):
        _take(session, slot_id) if delta > 0 else _free(session, slot_id)
    try:
        won = session.execute(
            update(Booking)
            .where(
                Booking.id == view.id,
                Booking.status == view.status.value,
                Booking.version == view.version,
                Booking.slot_id == view.slot.id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    except IntegrityError as exc:
        raise AlreadyBookedError("you already have a booking on that slot") from exc
    if _rowcount(won) != 1:
        raise ConcurrentChangeError("the booking changed meanwhile")
    if d.hold is not None or d.move is not None:
        hold_values: dict[str, Any] = {}
        if d.hold is not None:
            hold_values["status"] = d.hold.value
        if d.move is not None:
            hold_values["slot_id"] = d.move.new.id
        session.execute(
            update(Hold)
            .where(Hold.booking_id == view.id, Hold.status == HoldStatus.ACTIVE.value)
            .values(**hold_values)
            .execution_options(synchronize_session=False)
        )
    session.add(
        BookingStatusHistory(
            booking_id=view.id,
            from_status=view.status.value,
            to_status=d.to_status.value,
            reason=d.reason,
            actor=actor,
            at=now,
        )
    )
    _publish(session, d, now=now)
    # Written past the ORM: the next reader of this session must load the row again.
    session.expire(booking)


def _publish(session: Session, d: agg.Decision, *, now: datetime) -> None:
    """Stage the decision's events, and its notices keyed by the event that caused them."""
    cause = ""
    for event in d.events:
        row = add_event(session, event, occurred_at=now)
        cause = cause or row.event_id
    for notice in d.notices:
        add_notice(session, notice, cause=cause, now=now)


# -- the use cases ------------------------------------------------------------------------------------


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


def _bound(model: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    """`column=bindparam` pairs for a statement built once and executed with a parameter dict."""
    table = model.__table__
    return {c: bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns}


# The hold path's statements, built once: building and cache-keying a statement per request cost more
# CPU than executing it (issue 15's profile).
_SLOT_FOR_HOLD = (
    select(
        Slot.id,
        Slot.clinic_id,
        Slot.service_id,
        Service.code,
        Slot.starts_at,
        Slot.ends_at,
        Slot.capacity,
        Slot.booked,
        Slot.status,
        select(Patient.active).where(Patient.id == bindparam("patient_id")).scalar_subquery(),
    )
    .join(Service, Service.id == Slot.service_id)
    .where(Slot.id == bindparam("slot_id"))
    .with_for_update(of=Slot)
)
_PATIENT_ACTIVE = select(Patient.active).where(Patient.id == bindparam("patient_id"))
_PACKAGE_ID = select(Package.id).where(Package.code == bindparam("package_code"), Package.active)
_TAKE = (
    update(Slot)
    .where(Slot.id == bindparam("slot_id"), Slot.booked < Slot.capacity, Slot.status == "open")
    .values(booked=Slot.booked + 1)
)
_BOOKING_COLUMNS = (
    "id", "patient_id", "slot_id", "clinic_id", "service_id", "package_id", "status", "starts_at", "ends_at",
    "version", "created_at", "updated_at",
)  # fmt: skip
_HOLD_COLUMNS = ("id", "status", "slot_id", "patient_id", "booking_id", "created_at", "expires_at")
_HISTORY_COLUMNS = ("booking_id", "from_status", "to_status", "reason", "actor", "at")
# Every column spelled out: a statement in a CTE gets no Python-side column defaults.
_OUTBOX_COLUMNS = (
    "event_id", "event_type", "topic", "key", "payload", "headers", "created_at", "attempts",
)  # fmt: skip


@lru_cache(maxsize=8)
def _hold_writes(dialect: str, events: int) -> tuple[Any, ...]:
    """The writes of a hold with `events` outbox rows: one statement on PostgreSQL, else one per row.

    On PostgreSQL the place is taken and every row inserted as data-modifying CTEs of one statement that
    answers how many places it took (foreign keys are checked at the end of the statement, so the hold may
    name the booking inserted beside it). SQLite runs them one by one, in process.
    """
    inserts = [
        insert(Booking).values(_bound(Booking, "b_", _BOOKING_COLUMNS)),
        insert(Hold).values(_bound(Hold, "h_", _HOLD_COLUMNS)),
        insert(BookingStatusHistory).values(_bound(BookingStatusHistory, "s_", _HISTORY_COLUMNS)),
        *(
            insert(OutboxMessage).values(_bound(OutboxMessage, f"o{i}_", _OUTBOX_COLUMNS))
            for i in range(events)
        ),
    ]
    if dialect != "postgresql":
        return (_TAKE, *inserts)
    stmt = select(func.count()).select_from(_TAKE.returning(Slot.id).cte("took"))
    for i, part in enumerate(inserts):
        stmt = stmt.add_cte(part.cte(f"w{i}"))
    return (stmt,)


def _slot_for_hold(
    session: Session, slot_id: str, patient_id: str
) -> tuple[agg.SlotView, bool | None] | None:
    """The slot, row-locked, and whether its patient is active (None: unknown patient), in one round trip."""
    row = (
        session.connection()
        .execute(_SLOT_FOR_HOLD, {"slot_id": slot_id, "patient_id": patient_id})
        .one_or_none()
    )
    if row is None:
        return None
    view = agg.SlotView(
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
    return view, row[9]


def hold_booking(
    session: Session,
    *,
    patient_id: str,
    slot_id: str,
    package_code: str | None,
    now: datetime,
    hold_ttl: timedelta,
) -> HeldBooking:
    """A patient asks for a place: a pending booking, one place taken, an active hold.

    The busiest write of the API, so it is prepared Core statements, not ORM units of work: one read (the
    slot under its lock, with the patient's state) and, on PostgreSQL, one write (`_hold_writes`).
    """
    begin_write(session)
    conn = session.connection()
    found = _slot_for_hold(session, slot_id, patient_id)
    patient_active = (
        found[1] if found is not None else conn.scalar(_PATIENT_ACTIVE, {"patient_id": patient_id})
    )
    if patient_active is None:
        raise NotPermittedError("the patient is not registered", code="patient_not_registered")
    if found is None:
        raise NotFoundError("slot", slot_id)
    slot = found[0]
    package_id: str | None = None
    if package_code is not None:
        package_id = conn.scalar(_PACKAGE_ID, {"package_code": package_code})
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
        params.update({f"o{i}_{k}": event[k] for k in _OUTBOX_COLUMNS if k != "attempts"})
        params[f"o{i}_attempts"] = 0
    try:
        _run_hold_writes(conn, slot.id, params, len(events))
    except IntegrityError as exc:
        if not _already_booked(exc):
            raise
        raise AlreadyBookedError("you already have a booking on this slot") from exc
    for notice in d.notices:
        add_notice(session, notice, cause=events[0]["event_id"] if events else "", now=now)
    return HeldBooking(
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


def _run_hold_writes(conn: Connection, slot_id: str, params: dict[str, Any], events: int) -> None:
    """Take one place on the slot and insert the hold's rows; SlotUnavailableError when the slot is full.

    The slot row is locked already, so the place cannot go meanwhile: the condition on `booked` is the
    write's own check of the state it expects.
    """
    first, *rest = _hold_writes(conn.dialect.name, events)
    taken = conn.scalar(first, params) if not rest else _rowcount(conn.execute(first, params))
    if taken != 1:
        raise SlotUnavailableError(slot_id)
    for stmt in rest:
        conn.execute(stmt, params)


def _already_booked(exc: IntegrityError) -> bool:
    """Whether the error is the one-live-booking-per-patient-and-slot index (PostgreSQL or SQLite wording)."""
    text = str(exc.orig)
    return "uq_bookings_patient_slot_active" in text or "bookings.patient_id, bookings.slot_id" in text


def confirm_booking(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """Confirm a pending booking or reject it; a decided one is left alone."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    clinic = session.get(Clinic, lo.booking.clinic_id)
    service = session.get(Service, lo.booking.service_id)
    d = agg.confirm(
        lo.view,
        clinic_active=clinic is not None and clinic.active,
        service_active=service is not None and service.active,
        now=now,
    )
    package = lo.view.package_code
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    if d.changed and d.to_status is BookingStatus.BOOKED:
        add_event(
            session,
            RecommendationRequested(
                patient_id=lo.view.patient_id, booking_id=booking_id, package_code=package
            ),
            occurred_at=now,
        )
    return d


def cancel_booking(
    session: Session,
    *,
    booking_id: str,
    by: str,
    actor: str,
    now: datetime,
    patient_id: str | None = None,
    notice: timedelta | None = None,
) -> Booking:
    """Cancel (patient: own booking, within the notice; clinic: any time); a repeat changes nothing."""
    lo = Loaded(session, booking_id, patient_id=patient_id, also=None)
    d = agg.cancel(lo.view, by=by, now=now, notice=notice)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return lo.booking


def reschedule_booking(
    session: Session,
    *,
    booking_id: str,
    new_slot_id: str,
    actor: str,
    now: datetime,
    patient_id: str | None = None,
    notice: timedelta | None = None,
) -> Booking:
    """Move a booking to another slot of its service; the same slot again changes nothing."""
    lo = Loaded(session, booking_id, patient_id=patient_id, also=new_slot_id)
    new = lo.slots.get(new_slot_id)
    if new is None:
        raise NotFoundError("slot", new_slot_id)
    d = agg.reschedule(lo.view, _slot_view(new), now=now, notice=notice)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return lo.booking


def expire_hold(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """Cancel a still-pending booking whose hold has lapsed (cron)."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.expire_hold(lo.view, now=now)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def check_in(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """booked -> arrived."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.check_in(lo.view)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def mark_noshow(
    session: Session, *, booking_id: str, actor: str, now: datetime, reason: str | None = None
) -> agg.Decision:
    """booked -> noshow."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.no_show(lo.view, reason=reason)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def fulfil(session: Session, *, booking_id: str, actor: str, now: datetime) -> agg.Decision:
    """arrived -> fulfilled."""
    lo = Loaded(session, booking_id, patient_id=None, also=None)
    d = agg.fulfil(lo.view)
    _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
    return d


def patient_deactivated(session: Session, *, patient_id: str, actor: str, now: datetime) -> int:
    """Cancel every pending or booked appointment of a deactivated patient; returns how many."""
    ids = session.scalars(
        select(Booking.id).where(
            Booking.patient_id == patient_id,
            Booking.status.in_([BookingStatus.PENDING.value, BookingStatus.BOOKED.value]),
        )
    ).all()
    done = 0
    for booking_id in ids:
        lo = Loaded(session, booking_id, patient_id=patient_id, also=None)
        d = agg.patient_deactivated(lo.view, now=now)
        _apply(session, lo.booking, lo.view, d, actor=actor, now=now)
        done += int(d.changed)
    return done
