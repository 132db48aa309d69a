"""Public catalogue: clinics, tests and packages, free slots."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from booking_api.deps import NowDep, SessionDep
from booking_api.errors import COMMON
from booking_api.routes import API_PREFIX
from booking_api.schemas import CataloguePublic, ClinicPublic, SlotPublic
from booking_api.services import catalogue

router = APIRouter(prefix=API_PREFIX, tags=["catalogue"])


@router.get("/clinics", response_model=list[ClinicPublic], responses=COMMON)
def list_clinics(session: SessionDep) -> list[ClinicPublic]:
    """Active clinics."""
    return catalogue.list_clinics(session=session)


@router.get("/tests", response_model=CataloguePublic, responses=COMMON)
def get_catalogue(session: SessionDep) -> CataloguePublic:
    """The test catalogue: bookable services, lab tests and packages."""
    return catalogue.catalogue(session=session)


@router.get("/slots", response_model=list[SlotPublic], responses=COMMON)
def list_slots(
    session: SessionDep,
    now: NowDep,
    clinic_id: Annotated[str | None, Query(max_length=64)] = None,
    service: Annotated[str | None, Query(max_length=64, description="service code")] = None,
    date_from: Annotated[date | None, Query(description="first UTC date (default today)")] = None,
    date_to: Annotated[date | None, Query(description="last UTC date (default date_from + 6 days)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[SlotPublic]:
    """Open future slots with free capacity; at most 31 days are searched, a reversed range is empty."""
    return catalogue.free_slots(
        session=session,
        now=now,
        clinic_id=clinic_id,
        service_code=service,
        date_from=date_from,
        date_to=date_to,
        limit=limit,
    )
