"""FastAPI dependencies as Annotated aliases: SessionDep, PrincipalDep, PatientDep, StaffDep, NowDep."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from booking_api.auth import AuthError, Principal, decode_token
from booking_api.edge.ratelimit import admit_subject
from booking_api.errors import ForbiddenError, UnauthorizedError
from booking_core.settings import ApiSettings

_bearer = HTTPBearer(auto_error=False, description="JWT with `sub` = patient id and `role` patient|staff")


def get_settings(request: Request) -> ApiSettings:
    """The app's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; rolled back if the handler did not commit."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


def get_now() -> datetime:
    """The current UTC time (overridden in tests)."""
    return datetime.now(UTC)


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
NowDep = Annotated[datetime, Depends(get_now)]


def get_principal(
    settings: SettingsDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller from the bearer token; 401 without a valid one."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise UnauthorizedError()
    try:
        return decode_token(creds.credentials, settings)
    except AuthError as exc:
        raise UnauthorizedError(str(exc)) from exc


async def get_admitted_principal(
    request: Request, principal: Annotated[Principal, Depends(get_principal)]
) -> Principal:
    """The verified caller, within its own rate limit (429 past it) and noted for the access audit."""
    await admit_subject(request, principal.actor)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_admitted_principal)]


def get_patient(principal: PrincipalDep) -> Principal:
    """A patient caller; staff get 403."""
    if principal.role != "patient":
        raise ForbiddenError("a patient token is required")
    return principal


def get_staff(principal: PrincipalDep) -> Principal:
    """A staff caller; patients get 403."""
    if principal.role != "staff":
        raise ForbiddenError("a staff token is required")
    return principal


PatientDep = Annotated[Principal, Depends(get_patient)]
StaffDep = Annotated[Principal, Depends(get_staff)]
