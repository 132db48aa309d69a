"""Every pair of booking transitions raced on one booking, on SQLite and on PostgreSQL, many rounds each.

Each round seeds a fresh booking (pending with a lapsed hold, or booked, alternately) and runs two
transitions at once from two threads, each in its own transaction, through the unit of work the API,
the consumers and the cron call. Afterwards, for every slot touched: `booked <= capacity` and `booked`
equals the bookings that occupy a place on it (a count above that is a phantom place; a cancelled
booking still counted, or a moved one counted on its old slot, breaks the equality too).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db import lifecycle
from booking_core.db.models import Booking, Clinic, Hold, Patient, Service, Slot
from booking_core.domain.errors import DomainError, NotFoundError

ROUNDS = 12
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Round:
    """One round's rows: the booking (on slot a), two target slots and a second patient."""

    booking_id: str
    patient_id: str
    a: str
    b: str
    c: str
    other_patient: str


Op = Callable[[Session, Round], object]


def _hold_on_a(s: Session, r: Round) -> object:
    return lifecycle.hold_booking(
        s, patient_id=r.other_patient, slot_id=r.a, package_code=None, now=NOW, hold_ttl=timedelta(minutes=5)
    )


def _cancel_by(by: str) -> Op:
    def op(s: Session, r: Round) -> object:
        return lifecycle.cancel_booking(s, booking_id=r.booking_id, by=by, actor=by, now=NOW)

    return op


def _move_to(attr: str) -> Op:
    def op(s: Session, r: Round) -> object:
        return lifecycle.reschedule_booking(
            s, booking_id=r.booking_id, new_slot_id=getattr(r, attr), actor="patient", now=NOW
        )

    return op


OPS: dict[str, Op] = {
    "hold": _hold_on_a,
    "confirm": lambda s, r: lifecycle.confirm_booking(s, booking_id=r.booking_id, actor="t", now=NOW),
    "cancel_patient": _cancel_by("patient"),
    "cancel_clinic": _cancel_by("clinic"),
    "reschedule_b": _move_to("b"),
    "reschedule_c": _move_to("c"),
    "expire_hold": lambda s, r: lifecycle.expire_hold(s, booking_id=r.booking_id, actor="t", now=NOW),
    "check_in": lambda s, r: lifecycle.check_in(s, booking_id=r.booking_id, actor="t", now=NOW),
    "no_show": lambda s, r: lifecycle.mark_noshow(s, booking_id=r.booking_id, actor="t", now=NOW),
    "deactivate": lambda s, r: lifecycle.patient_deactivated(s, patient_id=r.patient_id, actor="t", now=NOW),
}
PAIRS = list(itertools.combinations_with_replacement(sorted(OPS), 2))


def _seed(s: Session, n: int, status: str) -> Round:
    clinic, service = Clinic(code=f"C{n}", name="Clinic"), Service(code=f"S{n}", name="Service")
    me, other = Patient(id=f"p-{n}"), Patient(id=f"q-{n}")
    s.add_all([clinic, service, me, other])
    s.flush()

    def slot(hours: int, capacity: int, booked: int) -> Slot:
        start = NOW + timedelta(days=2, hours=hours)
        row = Slot(
            clinic_id=clinic.id,
            service_id=service.id,
            starts_at=start,
            ends_at=start + timedelta(minutes=15),
            capacity=capacity,
            booked=booked,
        )
        s.add(row)
        return row

    # a holds the booking (full); b has one place; c has one of two left.
    a, b, c = slot(0, 1, 1), slot(1, 1, 0), slot(2, 2, 1)
    s.flush()
    filler = Patient(id=f"f-{n}")
    s.add(filler)
    s.flush()
    booking = Booking(
        patient_id=me.id,
        slot_id=a.id,
        clinic_id=clinic.id,
        service_id=service.id,
        status=status,
        starts_at=a.starts_at,
        ends_at=a.ends_at,
    )
    s.add_all(
        [
            booking,
            Booking(
                patient_id=filler.id,
                slot_id=c.id,
                clinic_id=clinic.id,
                service_id=service.id,
                status="booked",
                starts_at=c.starts_at,
                ends_at=c.ends_at,
            ),
        ]
    )
    s.flush()
    # A pending booking's hold has lapsed, so expire_hold has something to do (and confirm rejects).
    hold_status = "active" if status == "pending" else "converted"
    s.add(Hold(slot_id=a.id, patient_id=me.id, booking_id=booking.id, status=hold_status, expires_at=NOW))
    s.commit()
    return Round(booking.id, me.id, a.id, b.id, c.id, other.id)


def _run(
    sessions: sessionmaker[Session], op: Op, r: Round, barrier: threading.Barrier, errors: list[str]
) -> None:
    with sessions() as s:
        barrier.wait()
        try:
            op(s, r)
            s.commit()
        except NotFoundError as exc:  # nothing is ever deleted: a lost row is a locking bug
            s.rollback()
            errors.append(f"NotFoundError: {exc}")
        except DomainError:
            s.rollback()  # a refused transition is an answer, not a failure
        except BaseException as exc:
            s.rollback()
            errors.append(f"{type(exc).__name__}: {exc}")


def _check(sessions: sessionmaker[Session], r: Round, label: str) -> None:
    with sessions() as s:
        for slot_id in (r.a, r.b, r.c):
            slot = s.get(Slot, slot_id)
            assert slot is not None
            live = s.scalar(
                select(func.count())
                .select_from(Booking)
                .where(Booking.slot_id == slot_id, Booking.status != "cancelled")
            )
            assert slot.booked <= slot.capacity, f"{label}: overbooked {slot.booked}/{slot.capacity}"
            assert slot.booked == live, f"{label}: booked {slot.booked} but {live} bookings hold a place"


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-x-{b}" for a, b in PAIRS])
def test_racing_transitions_keep_every_slot_count_exact(
    sessions: sessionmaker[Session], first: str, second: str
) -> None:
    errors: list[str] = []
    for n in range(ROUNDS):
        with sessions() as s:
            r = _seed(s, n, "pending" if n % 2 == 0 else "booked")
        barrier = threading.Barrier(2, timeout=30)
        threads = [
            threading.Thread(target=_run, args=(sessions, OPS[name], r, barrier, errors))
            for name in (first, second)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [], errors
        _check(sessions, r, f"round {n}")
