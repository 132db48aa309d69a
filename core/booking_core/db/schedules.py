"""Turning a clinic's weekly schedules into slot rows (shared by the staff API and the demo data)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking_core.db.models import Clinic, Schedule, Slot
from booking_core.domain.slots import ScheduleRule, expand_rule


def materialize_slots(session: Session, *, clinic: Clinic, first: date, last: date, now: datetime) -> int:
    """Add the future slots the clinic's active schedules give on local dates first..last; returns how many.

    Existing slots (same clinic, service and start) are kept as they are, so running it twice adds nothing.
    The caller commits.
    """
    schedules = session.scalars(
        select(Schedule).where(Schedule.clinic_id == clinic.id, Schedule.active).order_by(Schedule.id)
    ).all()
    window_start = datetime.combine(first, datetime.min.time(), tzinfo=UTC) - timedelta(days=1)
    window_end = datetime.combine(last, datetime.min.time(), tzinfo=UTC) + timedelta(days=2)
    existing: set[tuple[str, datetime]] = {
        (service_id, starts_at)
        for service_id, starts_at in session.execute(
            select(Slot.service_id, Slot.starts_at).where(
                Slot.clinic_id == clinic.id, Slot.starts_at >= window_start, Slot.starts_at < window_end
            )
        )
    }
    created = 0
    for sched in schedules:
        rule = ScheduleRule(
            weekday=sched.weekday,
            start=sched.start_time,
            end=sched.end_time,
            slot_minutes=sched.slot_minutes,
            capacity=sched.capacity,
        )
        for st in expand_rule(rule, first=first, last=last, time_zone=clinic.time_zone):
            key = (sched.service_id, st.starts_at)
            if st.starts_at <= now or key in existing:
                continue
            existing.add(key)
            session.add(
                Slot(
                    clinic_id=clinic.id,
                    service_id=sched.service_id,
                    schedule_id=sched.id,
                    starts_at=st.starts_at,
                    ends_at=st.ends_at,
                    capacity=st.capacity,
                    booked=0,
                    status="open",
                    created_at=now,
                )
            )
            created += 1
    return created
