"""Public catalogue: clinics, tests and packages, free slots."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from booking_api import cursors
from booking_api.deps import NowDep, ReadSessionDep, get_now
from booking_api.errors import COMMON
from booking_api.routes import API_PREFIX
from booking_api.routes.slot_query import (
    CURSOR_PATTERN,
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_TEXT,
    SlotQuery,
    slot_search_route,
)
from booking_api.schemas import CataloguePublic, ClinicPublic, SlotPage
from booking_api.services import catalogue

router = APIRouter(prefix=API_PREFIX, tags=["catalogue"])


@router.get("/clinics", response_model=list[ClinicPublic], responses=COMMON)
def list_clinics(session: ReadSessionDep) -> list[ClinicPublic]:
    """Active clinics."""
    return catalogue.list_clinics(session=session)


@router.get("/tests", response_model=CataloguePublic, responses=COMMON)
def get_catalogue(session: ReadSessionDep) -> CataloguePublic:
    """The test catalogue: bookable services, lab tests and packages."""
    return catalogue.catalogue(session=session)


async def search_slots(request: Request, query: SlotQuery, now: datetime) -> Response:
    """A page of the slot search as JSON, read on the event loop (booking_api.dbwork).

    Never cached: a page shows the free places as the database has them now.
    """
    search = catalogue.slot_search(
        now=now,
        clinic_id=query.clinic_id,
        service_code=query.service,
        date_from=query.date_from,
        date_to=query.date_to,
        limit=query.limit,
        cursor=query.cursor,
    )
    rows = await request.app.state.db_work.fetch_all(search.stmt, search.params) if search is not None else []
    # Built from the rows as the schema's JSON: no models, no second pass by FastAPI.
    return Response(catalogue.slot_page_json(search, rows), media_type="application/json")


async def list_slots(
    request: Request,
    now: NowDep,
    clinic_id: Annotated[str | None, Query(max_length=MAX_TEXT)] = None,
    service: Annotated[str | None, Query(max_length=MAX_TEXT, description="service code")] = None,
    date_from: Annotated[date | None, Query(description="first UTC date (default today)")] = None,
    date_to: Annotated[date | None, Query(description="last UTC date (default date_from + 6 days)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Query(
            max_length=cursors.MAX_CURSOR_CHARS,
            pattern=CURSOR_PATTERN,
            description="`next_cursor` of the previous page, with the same search parameters",
        ),
    ] = None,
) -> Response:
    """Open future slots with free capacity, a page at a time by (starts_at, id); 31 days at most."""
    query = SlotQuery(clinic_id, service, date_from, date_to, limit, cursor)
    return await search_slots(request, query, now)


router.add_api_route(
    "/slots",
    list_slots,
    methods=["GET"],
    response_model=SlotPage,
    responses=COMMON,
    # Plain queries are read without FastAPI's per-request parameter solving (routes/slot_query.py).
    route_class_override=slot_search_route(search_slots, get_now),
)
