"""The new booking's statements, built once (`hold_plan` in hold.py decides which run, with what).

Building and cache-keying a statement per request cost more CPU than executing it (issue 15's profile),
so every statement here is built at import or once per shape (`hold_writes`), executed with parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Hold,
    OutboxMessage,
    Package,
    Patient,
    Service,
    Slot,
)


def _bound(model: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    """`column=bindparam` pairs for a statement built once and executed with a parameter dict."""
    table = model.__table__
    return {c: bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns}


SLOT_READ = (
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
)
SLOT_FOR_HOLD = SLOT_READ.with_for_update(of=Slot)
PATIENT_ACTIVE = select(Patient.active).where(Patient.id == bindparam("patient_id"))


def locked_slot_read(gate: Any) -> Any:
    """The hold's read (the slot under its lock, with the patient's account) as a LATERAL subquery made
    only where `gate` is not null, for a caller that writes first in the same statement (the API's
    Idempotency-Key claim: one round trip fewer). Its row goes to `hold_plan(read=...)`; its parameters
    are `slot_id` and `patient_id`. Gated, the lock is taken after the caller's write, in the order the
    two statements took them, and not at all when the gate is null (a replay).
    """
    return SLOT_FOR_HOLD.where(gate.is_not(None)).lateral("held_slot")


def slot_read() -> Any:
    """The hold's read without a lock, as a LATERAL subquery, for a caller that reads its own rows in the
    same statement and then writes with `hold_plan(conditional=True)`. Its parameters are `slot_id` and
    `patient_id`; its row goes to `hold_plan(read=...)`."""
    return SLOT_READ.lateral("held_slot")


@dataclass(frozen=True)
class AlsoInsert:
    """A row of the caller's own, inserted with the booking's rows in their statement: `model`'s `columns`
    from parameters named `prefix` + column. In a conditional write it is inserted only with them."""

    model: Any
    columns: tuple[str, ...]
    prefix: str


PACKAGE_ID = select(Package.id).where(Package.code == bindparam("package_code"), Package.active)
_TAKE = (
    update(Slot)
    .where(Slot.id == bindparam("slot_id"), Slot.booked < Slot.capacity, Slot.status == "open")
    .values(booked=Slot.booked + 1)
)


def _slot_param(column: str) -> Any:
    return bindparam(f"r_{column}", type_=Slot.__table__.c[column].type)


# A conditional write's take: the place, if the slot is still as it was read (open, a place free, the
# same time, clinic and service, which the decision and the booking's rows were made from).
_TAKE_AS_READ = (
    update(Slot)
    .where(
        Slot.id == bindparam("slot_id"),
        Slot.booked < Slot.capacity,
        Slot.status == "open",
        Slot.starts_at == _slot_param("starts_at"),
        Slot.ends_at == _slot_param("ends_at"),
        Slot.clinic_id == _slot_param("clinic_id"),
        Slot.service_id == _slot_param("service_id"),
    )
    .values(booked=Slot.booked + 1)
)
_BOOKING_COLUMNS = (
    "id", "patient_id", "slot_id", "clinic_id", "service_id", "package_id", "status", "starts_at", "ends_at",
    "version", "created_at", "updated_at",
)  # fmt: skip
_HOLD_COLUMNS = ("id", "status", "slot_id", "patient_id", "booking_id", "created_at", "expires_at")
_HISTORY_COLUMNS = ("booking_id", "from_status", "to_status", "reason", "actor", "at")
# Every column spelled out: a statement in a CTE gets no Python-side column defaults.
OUTBOX_COLUMNS = (
    "event_id", "event_type", "topic", "key", "payload", "headers", "created_at", "attempts",
)  # fmt: skip


@lru_cache(maxsize=8)
def hold_writes(dialect: str, events: int, extra: Any, conditional: bool) -> tuple[Any, ...]:
    """The writes of a hold with `events` outbox rows (and the caller's `extra` write, if any): one
    statement on PostgreSQL, else one per row.

    On PostgreSQL the place is taken and every row inserted as data-modifying CTEs of one statement that
    answers how many places it took (foreign keys are checked at the end of the statement, so the hold may
    name the booking inserted beside it). SQLite runs them one by one, in process.

    `conditional` (PostgreSQL): the place is taken only from the slot as it was read (`_TAKE_AS_READ`),
    and every row is inserted from that take, so nothing is written when it took none. The caller's
    `AlsoInsert` comes first and the booking's rows from it: a conflict on the caller's row (a retry with
    the same Idempotency-Key) is met before the booking's own unique index.
    """
    took: Any = None
    if conditional:
        if dialect != "postgresql":
            raise ValueError("a conditional hold is one statement: PostgreSQL only")
        took = _TAKE_AS_READ.returning(Slot.id).cte("took")

    def row(model: Any, prefix: str, columns: Sequence[str], source: Any) -> Any:
        values = _bound(model, prefix, columns)
        if source is None:
            return insert(model).values(values)
        return insert(model).from_select(list(columns), select(*values.values()).select_from(source))

    first: list[Any] = []
    source = took
    if isinstance(extra, AlsoInsert):
        extra_row = row(extra.model, extra.prefix, extra.columns, took)
        if conditional:
            extra_row = extra_row.returning(extra.model.__table__.c[extra.columns[0]]).cte("also")
            source = extra_row
        first.append(extra_row)
    elif extra is not None:
        first.append(extra)
    inserts = [
        *(first if not conditional else []),
        row(Booking, "b_", _BOOKING_COLUMNS, source),
        row(Hold, "h_", _HOLD_COLUMNS, source),
        row(BookingStatusHistory, "s_", _HISTORY_COLUMNS, source),
        *(row(OutboxMessage, f"o{i}_", OUTBOX_COLUMNS, source) for i in range(events)),
    ]
    if dialect != "postgresql":
        return (_TAKE, *inserts)
    if took is None:
        took = _TAKE.returning(Slot.id).cte("took")
    stmt = select(func.count()).select_from(took)
    for c in first if conditional else []:
        stmt = stmt.add_cte(c)
    for i, part in enumerate(inserts):
        stmt = stmt.add_cte(part.cte(f"w{i}"))
    return (stmt,)
