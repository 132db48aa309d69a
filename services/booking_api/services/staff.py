"""Staff use cases: clinics' weekly schedules and their slots."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_api.schemas import (
    ScheduleCreate,
    SchedulePublic,
    SlotCreate,
    SlotGenerate,
    SlotStaff,
    SlotUpdate,
)
from booking_api.services import idempotency
from booking_api.services.catalogue import day_range
from booking_api.services.views import slot_staff
from booking_core.db.models import Clinic, Schedule, Service, Slot
from booking_core.db.schedules import materialize_slots
from booking_core.domain.errors import ConflictError, InvalidValueError, NotFoundError
from booking_core.domain.slots import MAX_SLOT_SEARCH_DAYS, ScheduleRule, add_days, search_window

MAX_GENERATE_DAYS = 92


def _clinic(session: Session, clinic_id: str) -> Clinic:
    clinic = session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFoundError("clinic", clinic_id)
    return clinic


def _service(session: Session, code: str) -> Service:
    service = session.scalar(select(Service).where(Service.code == code))
    if service is None:
        raise InvalidValueError("body.service_code", "unknown service")
    return service


def _schedule_public(s: Schedule, service_code: str) -> SchedulePublic:
    return SchedulePublic(
        id=s.id,
        clinic_id=s.clinic_id,
        service_code=service_code,
        weekday=s.weekday,
        start_time=s.start_time,
        end_time=s.end_time,
        slot_minutes=s.slot_minutes,
        capacity=s.capacity,
        active=s.active,
    )


def list_schedules(*, session: Session, clinic_id: str) -> list[SchedulePublic]:
    """A clinic's schedule rules (active and retired)."""
    _clinic(session, clinic_id)
    rows = session.execute(
        select(Schedule, Service.code)
        .join(Service, Service.id == Schedule.service_id)
        .where(Schedule.clinic_id == clinic_id)
        .order_by(Schedule.weekday, Schedule.start_time, Schedule.id)
    )
    return [_schedule_public(s, code) for s, code in rows]


def create_schedule(
    *,
    session: Session,
    clinic_id: str,
    data: ScheduleCreate,
    now: datetime,
    subject: str,
    idempotency_key: str | None = None,
) -> idempotency.Outcome:
    """Add a weekly rule to a clinic (slots appear when generated); once per Idempotency-Key."""

    def create() -> SchedulePublic:
        _clinic(session, clinic_id)
        service = _service(session, data.service_code)
        ScheduleRule(
            weekday=data.weekday,
            start=data.start_time,
            end=data.end_time,
            slot_minutes=data.slot_minutes,
            capacity=data.capacity,
        )  # domain validation (end after start)
        s = Schedule(
            clinic_id=clinic_id,
            service_id=service.id,
            weekday=data.weekday,
            start_time=data.start_time,
            end_time=data.end_time,
            slot_minutes=data.slot_minutes,
            capacity=data.capacity,
            active=True,
            created_at=now,
        )
        session.add(s)
        session.flush()
        return _schedule_public(s, service.code)

    return idempotency.run_once(
        session=session,
        subject=idempotency.staff_subject(subject),
        key=idempotency_key,
        route=f"POST /api/v1/staff/clinics/{clinic_id}/schedules",
        body=data.model_dump(mode="json"),
        now=now,
        create=create,
    )


def retire_schedule(*, session: Session, schedule_id: str) -> None:
    """Stop a rule producing new slots (existing slots and bookings stay)."""
    s = session.get(Schedule, schedule_id)
    if s is None:
        raise NotFoundError("schedule", schedule_id)
    s.active = False
    session.commit()


def generate_slots(*, session: Session, clinic_id: str, data: SlotGenerate, now: datetime) -> int:
    """Create the slots of the clinic's active schedules on the given local dates; idempotent.

    Past dates are skipped and at most MAX_GENERATE_DAYS from the first future date are generated.
    """
    clinic = _clinic(session, clinic_id)
    first = max(data.date_from, add_days(now.date(), -1))
    last = min(data.date_to, add_days(first, MAX_GENERATE_DAYS - 1))
    if last < first:
        return 0
    created = materialize_slots(session, clinic=clinic, first=first, last=last, now=now)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError("slots were generated concurrently; retry") from exc
    return created


def create_slot(
    *,
    session: Session,
    clinic_id: str,
    data: SlotCreate,
    now: datetime,
    subject: str,
    idempotency_key: str | None = None,
) -> idempotency.Outcome:
    """Add one slot by hand; once per Idempotency-Key."""

    def create() -> SlotStaff:
        _clinic(session, clinic_id)
        service = _service(session, data.service_code)
        if data.starts_at.tzinfo is None:
            raise InvalidValueError("body.starts_at", "a time zone offset is required")
        if data.ends_at.tzinfo is None:
            raise InvalidValueError("body.ends_at", "a time zone offset is required")
        if data.ends_at <= data.starts_at:
            raise InvalidValueError("body.ends_at", "ends_at must be after starts_at")
        if data.starts_at <= now:
            raise InvalidValueError("body.starts_at", "starts_at must be in the future")
        slot = Slot(
            clinic_id=clinic_id,
            service_id=service.id,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            capacity=data.capacity,
            booked=0,
            status="open",
            created_at=now,
        )
        session.add(slot)
        try:
            session.flush()
        except IntegrityError as exc:
            raise ConflictError("a slot for this service already starts at that time") from exc
        session.refresh(slot)  # times as the database stores them (UTC)
        return slot_staff(slot)

    return idempotency.run_once(
        session=session,
        subject=idempotency.staff_subject(subject),
        key=idempotency_key,
        route=f"POST /api/v1/staff/clinics/{clinic_id}/slots",
        body=data.model_dump(mode="json"),
        now=now,
        create=create,
    )


def update_slot(*, session: Session, slot_id: str, data: SlotUpdate) -> SlotStaff:
    """Change capacity (never below the booked count) or open/close a slot."""
    values: dict[str, object] = {}
    if data.capacity is not None:
        values["capacity"] = data.capacity
    if data.status is not None:
        values["status"] = data.status
    stmt = update(Slot).where(Slot.id == slot_id)
    if data.capacity is not None:
        stmt = stmt.where(Slot.booked <= data.capacity)
    if values:
        res = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            if session.get(Slot, slot_id) is None:
                raise NotFoundError("slot", slot_id)
            raise ConflictError("capacity cannot go below the places already booked")
        session.commit()
    slot = session.get(Slot, slot_id, populate_existing=True)
    if slot is None:
        raise NotFoundError("slot", slot_id)
    return slot_staff(slot)


def list_slots(
    *,
    session: Session,
    clinic_id: str,
    now: datetime,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[SlotStaff]:
    """All of a clinic's slots in the UTC date range, full and closed ones included."""
    _clinic(session, clinic_id)
    window = search_window(date_from, date_to, today=now.date())
    if window is None:
        return []
    start, end = day_range(*window)
    rows = session.scalars(
        select(Slot)
        .where(Slot.clinic_id == clinic_id, Slot.starts_at >= start, Slot.starts_at < end)
        .order_by(Slot.starts_at, Slot.id)
        .limit(MAX_SLOT_SEARCH_DAYS * 200)
    ).unique()
    return [slot_staff(s) for s in rows]
