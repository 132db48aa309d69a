"""Catalogue reads: clinics, services, tests, packages and free slots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Integer, Select, bindparam, select, tuple_
from sqlalchemy.orm import Session

from booking_api import cursors
from booking_api.schemas import (
    CataloguePublic,
    ClinicPublic,
    PackagePublic,
    ServicePublic,
    SlotPage,
    TestPublic,
)
from booking_core.db.models import Clinic, Package, Service, Slot, Test, UTCDateTime
from booking_core.domain.slots import free_capacity, search_window


def list_clinics(*, session: Session) -> list[ClinicPublic]:
    """Active clinics by name."""
    rows = session.scalars(select(Clinic).where(Clinic.active).order_by(Clinic.name, Clinic.id))
    return [ClinicPublic.model_validate(c) for c in rows]


def catalogue(*, session: Session) -> CataloguePublic:
    """The active services, tests and packages."""
    services = session.scalars(select(Service).where(Service.active).order_by(Service.code))
    tests = session.scalars(select(Test).where(Test.active).order_by(Test.code))
    packages = session.scalars(select(Package).where(Package.active).order_by(Package.code))
    return CataloguePublic(
        services=[ServicePublic.model_validate(s) for s in services],
        tests=[TestPublic.model_validate(t) for t in tests],
        packages=[
            PackagePublic(
                code=p.code,
                name=p.name,
                description=p.description,
                price_cents=p.price_cents,
                currency=p.currency,
                tests=[t.code for t in p.tests],
            )
            for p in packages
        ],
    )


def day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """[midnight UTC of first, midnight UTC after last), saturating at the calendar's end."""
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last, time(0), tzinfo=UTC)
    try:
        end += timedelta(days=1)
    except OverflowError:
        end = datetime.max.replace(tzinfo=UTC)
    return start, end


# id, clinic id, service code, starts, ends, capacity, booked
SlotSearch = Select[str, str, str, datetime, datetime, int, int]


@lru_cache(maxsize=8)
def _free_slots_statement(by_clinic: bool, by_service: bool, after: bool) -> SlotSearch:
    """The search's statement for one combination of filters, built once and run with parameters.

    Plain columns, not ORM rows: the portal's most frequent read builds up to `limit` rows, and loading
    Slot entities with their joined clinic and service cost most of its time; building and cache-keying
    the statement per request cost a fifth of what remained (issue 15's profiles).
    """
    stmt = (
        select(
            Slot.id, Slot.clinic_id, Service.code, Slot.starts_at, Slot.ends_at, Slot.capacity, Slot.booked
        )
        .join(Service, Service.id == Slot.service_id)
        .join(Clinic, Clinic.id == Slot.clinic_id)
        .where(
            Slot.starts_at >= bindparam("start", type_=UTCDateTime()),
            Slot.starts_at < bindparam("end", type_=UTCDateTime()),
            Slot.status == "open",
            Slot.booked < Slot.capacity,
            Clinic.active,
            Service.active,
        )
        .order_by(Slot.starts_at, Slot.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if after:
        # Keyset, not offset: a page costs the same however deep, and stays stable while slots fill up.
        stmt = stmt.where(
            tuple_(Slot.starts_at, Slot.id)
            > tuple_(bindparam("after_starts_at", type_=UTCDateTime()), bindparam("after_id"))
        )
    if by_clinic:
        stmt = stmt.where(Slot.clinic_id == bindparam("clinic_id"))
    if by_service:
        stmt = stmt.where(Service.code == bindparam("service_code"))
    return stmt


@dataclass(frozen=True)
class SlotSearchQuery:
    """A slot search as one statement and its parameters, and what the page needs to be built."""

    stmt: SlotSearch
    params: dict[str, object]
    limit: int
    search: str


def slot_search(
    *,
    now: datetime,
    clinic_id: str | None = None,
    service_code: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> SlotSearchQuery | None:
    """The statement for a page of open future slots with free capacity in the UTC date range (default a
    week, 31 days max); None when the range holds no future day. A cursor of another search is refused."""
    search = cursors.fingerprint(clinic_id, service_code, date_from, date_to)
    after = cursors.decode(cursor, search) if cursor is not None else None
    window = search_window(date_from, date_to, today=now.date())
    if window is None:
        return None
    start, end = day_range(*window)
    params: dict[str, object] = {
        "start": max(start, now),
        "end": end,
        "limit": limit + 1,  # one more than the page: whether a next page exists, without a count
        "clinic_id": clinic_id,
        "service_code": service_code,
    }
    if after is not None:
        params.update(after_starts_at=after.starts_at, after_id=after.id)
    stmt = _free_slots_statement(clinic_id is not None, service_code is not None, after is not None)
    return SlotSearchQuery(stmt=stmt, params=params, limit=limit, search=search)


def _page_fields(query: SlotSearchQuery | None, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """A page's fields from its statement's rows (limit + 1 of them when a next page exists)."""
    if query is None:
        return {"items": [], "next_cursor": None}
    limit = query.limit
    items = [
        {
            "id": slot_id,
            "clinic_id": clinic,
            "service_code": code,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "capacity": capacity,
            "free": free_capacity(capacity, booked),
        }
        for slot_id, clinic, code, starts_at, ends_at, capacity, booked in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = cursors.encode(cursors.Position(starts_at=last[3], id=last[0]), query.search)
    return {"items": items, "next_cursor": next_cursor}


def slot_page(query: SlotSearchQuery | None, rows: Sequence[Sequence[Any]]) -> SlotPage:
    """The page of a search from its statement's rows, as the validated model."""
    return SlotPage.model_validate(_page_fields(query, rows))


def slot_page_json(query: SlotSearchQuery | None, rows: Sequence[Sequence[Any]]) -> bytes:
    """`slot_page(query, rows)` as the JSON FastAPI sends for it, without building the models.

    The rows are the database's (strings, ints, aware UTC datetimes), so the schema has nothing to
    check; pydantic's serializer writes the same bytes from plain dicts at half the cost of validating
    a SlotPublic per row first (tests/api/test_slot_pages.py compares the two).
    """
    return to_json(_page_fields(query, rows))


def free_slots(*, session: Session, now: datetime, **search: Any) -> SlotPage:
    """A page of open future slots (slot_search's arguments), read on `session`."""
    query = slot_search(now=now, **search)
    rows = session.connection().execute(query.stmt, query.params).all() if query is not None else []
    return slot_page(query, rows)
