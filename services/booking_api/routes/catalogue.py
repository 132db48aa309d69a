"""Public catalogue: clinics, tests and packages, free slots."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response

from booking_api import cursors
from booking_api.deps import DbWorkDep, NowDep, ReadSessionDep
from booking_api.errors import COMMON
from booking_api.responses import model_json
from booking_api.routes import API_PREFIX
from booking_api.schemas import CataloguePublic, ClinicPublic, SlotPage
from booking_api.services import catalogue

router = APIRouter(prefix=API_PREFIX, tags=["catalogue"])
# A portal shows a page of times, not a month of them.
DEFAULT_PAGE = 20
MAX_PAGE = 100


@router.get("/clinics", response_model=list[ClinicPublic], responses=COMMON)
def list_clinics(session: ReadSessionDep) -> list[ClinicPublic]:
    """Active clinics."""
    return catalogue.list_clinics(session=session)


@router.get("/tests", response_model=CataloguePublic, responses=COMMON)
def get_catalogue(session: ReadSessionDep) -> CataloguePublic:
    """The test catalogue: bookable services, lab tests and packages."""
    return catalogue.catalogue(session=session)


@router.get("/slots", response_model=SlotPage, responses=COMMON)
async def list_slots(
    db: DbWorkDep,
    now: NowDep,
    clinic_id: Annotated[str | None, Query(max_length=64)] = None,
    service: Annotated[str | None, Query(max_length=64, description="service code")] = None,
    date_from: Annotated[date | None, Query(description="first UTC date (default today)")] = None,
    date_to: Annotated[date | None, Query(description="last UTC date (default date_from + 6 days)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Query(
            max_length=cursors.MAX_CURSOR_CHARS,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="`next_cursor` of the previous page, with the same search parameters",
        ),
    ] = None,
) -> Response:
    """Open future slots with free capacity, a page at a time by (starts_at, id); 31 days at most."""
    query = catalogue.slot_search(
        now=now,
        clinic_id=clinic_id,
        service_code=service,
        date_from=date_from,
        date_to=date_to,
        limit=limit,
        cursor=cursor,
    )
    rows = await db.fetch_all(query.stmt, query.params) if query is not None else []
    page = catalogue.slot_page(query, rows)
    return model_json(page)  # built by the service, validated there: no second pass by FastAPI
