"""The API's error shape, its OpenAPI description, and the handlers that translate every failure once.

Every error is `{"error": {"code", "message", "fields"}}`; validation errors name each bad field but never
echo its value (it may be patient data). Database outages answer 503 with Retry-After; anything else
unexpected answers a bare 500 (never a stack trace).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from booking_core.domain.errors import (
    ConflictError,
    DomainError,
    InvalidValueError,
    NotFoundError,
    NotPermittedError,
)

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class FieldError(BaseModel):
    """One invalid input: where it is (e.g. `body.slot_id`, `query.date_to`) and what is wrong."""

    field: str
    message: str
    type: str


class ErrorDetail(BaseModel):
    """A stable machine-readable code, a human message, and the bad fields for 422."""

    code: str
    message: str
    fields: list[FieldError] = []


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error with its HTTP status, raised by routes and dependencies."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.headers = headers


class UnauthorizedError(ApiError):
    """401: no valid bearer token."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(ApiError):
    """403: authenticated, but not allowed."""

    status_code = 403
    code = "forbidden"


class AuthUnavailableError(ApiError):
    """503: the identity provider's keys could not be fetched, so the token could not be checked."""

    status_code = 503
    code = "auth_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the identity provider is unavailable, retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class UnprocessableError(ApiError):
    """422 for one named field."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


Responses = dict[int | str, dict[str, Any]]
R400: Responses = {400: _doc("The request body could not be read")}
R401: Responses = {401: _doc("Missing, invalid or expired bearer token")}
R403: Responses = {403: _doc("The token's role may not use this endpoint")}
R404: Responses = {404: _doc("Not found (or not yours)")}
R409: Responses = {409: _doc("Conflict: slot full, state change not allowed, notice period passed")}
R422: Responses = {422: _doc("Invalid input; `fields` names each bad field")}
R503: Responses = {
    503: {
        **_doc("The database is unreachable; retry after the given delay"),
        "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    }
}
COMMON: Responses = {**R400, **R422, **R503}
AUTHED: Responses = {**R401, **R403, **COMMON}


def error_body(code: str, message: str, fields: list[FieldError] | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return ErrorResponse(error=ErrorDetail(code=code, message=message, fields=fields or [])).model_dump()


def _json(
    status: int,
    code: str,
    message: str,
    *,
    fields: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, fields), status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    fields = (
        [FieldError(field=exc.field, message=exc.message, type=exc.code)]
        if isinstance(exc, UnprocessableError)
        else None
    )
    return _json(exc.status_code, exc.code, exc.message, fields=fields, headers=exc.headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, NotFoundError):
        return _json(404, exc.code, str(exc))
    if isinstance(exc, ConflictError):
        return _json(409, exc.code, str(exc))
    if isinstance(exc, NotPermittedError):
        return _json(403, exc.code, str(exc))
    if isinstance(exc, InvalidValueError):
        field = exc.field if "." in exc.field else f"body.{exc.field}"
        return _json(
            422,
            "validation_error",
            str(exc),
            fields=[FieldError(field=field, message=str(exc), type=exc.code)],
        )
    return _json(400, exc.code, str(exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        FieldError(
            field=_loc(e.get("loc", ())),
            message=str(e.get("msg", "invalid")),
            type=str(e.get("type", "invalid")),
        )
        for e in exc.errors()
    ]
    return _json(422, "validation_error", "the request is invalid", fields=fields)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        431: "headers_too_large",
    }.get(exc.status_code, "http_error")
    return _json(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _db_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message may quote row values: log the type only (the JSON formatter drops messages).
    log.warning("database unavailable", extra={"reason": type(exc).__name__, "path": _route(request)})
    return unavailable_response()


def unavailable_response() -> JSONResponse:
    """503 with Retry-After: the database cannot be reached."""
    return _json(
        503,
        "database_unavailable",
        "the database is unavailable, retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def is_db_unavailable(exc: BaseException) -> bool:
    """True for errors that mean the database cannot be reached (not for constraint violations)."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if is_db_unavailable(exc):
        return await _db_unavailable(request, exc)
    log.error("database error", extra={"reason": type(exc).__name__, "path": _route(request)})
    return _json(500, "internal_error", "internal error")


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    # A date the schema accepts (years 1-9999) that arithmetic pushes past the calendar's ends, e.g. a
    # local time converted to UTC on 9999-12-31: the input is the problem, so 422, never a bare 500.
    log.info("date out of range", extra={"reason": type(exc).__name__, "path": _route(request)})
    return _json(422, "date_out_of_range", "a date or time in the request is out of the supported range")


def install_error_handlers(app: FastAPI) -> None:
    """Register the translations from exceptions to error responses."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa_exc.OperationalError, _db_unavailable)
    app.add_exception_handler(sa_exc.TimeoutError, _db_unavailable)
    app.add_exception_handler(sa_exc.DBAPIError, _dbapi_error)
