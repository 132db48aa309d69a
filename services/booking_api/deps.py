"""FastAPI dependencies as Annotated aliases: SessionDep, DbWorkDep, PrincipalDep, PatientDep, StaffDep..."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from booking_api.auth import AuthError, Principal
from booking_api.dbwork import DbWork
from booking_api.edge.ratelimit import admit_subject
from booking_api.errors import AuthUnavailableError, ForbiddenError, UnauthorizedError
from booking_api.services import accounts
from booking_api.settings import ApiSettings
from booking_api.verifier import ProviderUnavailableError, Verifier

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    description="An OpenID Connect token (the patient's id and the staff role in the configured claims)",
)


# Dependencies without I/O are `async def`: FastAPI runs a plain `def` dependency on the thread pool, and
# that hop cost more than anything else on the read paths (issue 15's profile).
async def get_settings(request: Request) -> ApiSettings:
    """The app's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request; rolled back if the handler did not commit."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    # Making a session does no I/O (it connects on first use); closing one that holds a connection rolls
    # back over the network, so only that goes to the thread pool.
    session = factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_read_session(request: Request) -> AsyncIterator[Session]:
    """A session for routes that only read: each statement autocommits, so there is no BEGIN before the
    first and no ROLLBACK at the end, and closing it needs no I/O (two round trips fewer per request)."""
    factory: sessionmaker[Session] = request.app.state.read_session_factory
    session = factory()
    try:
        yield session
    finally:
        session.close()


async def get_now() -> datetime:
    """The current UTC time (overridden in tests)."""
    return datetime.now(UTC)


async def get_db_work(request: Request) -> DbWork:
    """The app's reads for `async def` routes (booking_api.dbwork)."""
    db: DbWork = request.app.state.db_work
    return db


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
DbWorkDep = Annotated[DbWork, Depends(get_db_work)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
NowDep = Annotated[datetime, Depends(get_now)]


async def get_principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller from the bearer token, within its own rate limit and noted for the access audit.

    401 without a valid token, 503 when its keys cannot be fetched, 429 past the caller's budget. One
    dependency rather than a chain (verifier, principal, admission): FastAPI walks every node of a
    route's dependency tree on each request, which was a tenth of a booking's CPU (issue 15's profile).
    """
    if creds is None or creds.scheme.lower() != "bearer":
        raise UnauthorizedError()
    verifier: Verifier = request.app.state.verifier
    # The wall clock, not NowDep: tests move NowDep to exercise business rules, not token expiry.
    now = datetime.now(UTC)
    principal = verifier.cached(creds.credentials, now)
    if principal is None:
        try:
            # On the thread pool: a token naming a new key fetches the provider's JWKS over the network.
            principal = await run_in_threadpool(verifier.verify, creds.credentials, now)
        except AuthError as exc:
            raise UnauthorizedError(str(exc)) from exc
        except ProviderUnavailableError as exc:
            log.warning("identity provider unavailable", extra={"reason": type(exc.__cause__).__name__})
            raise AuthUnavailableError() from exc
    await admit_subject(request, principal.actor)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_active_patient(session: Session, patient_id: str) -> None:
    """403 for a deactivated account, whatever its token says (one indexed lookup)."""
    if accounts.is_deactivated(session.connection().scalar(accounts.ACTIVE, {"patient_id": patient_id})):
        raise accounts.deactivated_error()


async def get_patient_token(principal: PrincipalDep) -> Principal:
    """A caller with a patient token; the route must check the account itself.

    For the busiest route (booking create): its Idempotency-Key claim reads the account in the same round
    trip (booking_api.services.idempotency), with no thread-pool hop and no statement of its own.
    """
    if principal.role != "patient":
        raise ForbiddenError("a patient token is required")
    return principal


PatientTokenDep = Annotated[Principal, Depends(get_patient_token)]


def get_patient(principal: PatientTokenDep, session: SessionDep) -> Principal:
    """A patient caller whose account is not deactivated; staff and deactivated patients get 403."""
    # A deactivated account loses every patient route at once.
    require_active_patient(session, principal.subject)
    return principal


def get_staff(principal: PrincipalDep) -> Principal:
    """A staff caller; patients get 403."""
    if principal.role != "staff":
        raise ForbiddenError("a staff token is required")
    return principal


PatientDep = Annotated[Principal, Depends(get_patient)]
StaffDep = Annotated[Principal, Depends(get_staff)]
