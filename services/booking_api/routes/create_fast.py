"""Booking create's plain requests, read without FastAPI's per-request dependency solving.

As for the slot search (routes/slot_query.py): FastAPI walks the route's dependency tree on every request
(the bearer scheme, the principal, the patient check, settings, the clock, the Idempotency-Key header and
the body), which was a large part of a create's CPU on the event loop (issue 15's profile). The common case
is read here instead: exactly one `Authorization: Bearer` header whose token the verifier has already
accepted and cached for a patient, exactly one `Content-Type: application/json`, exactly one plain
Idempotency-Key within the declared bounds, and a body that `BookingCreate.model_validate_json` accepts.
Anything else (a token seen for the first time, staff, a header twice, an invalid body, a test's
dependency overrides) takes FastAPI's path, whose checks and 401/403/422 answers stay the only ones; the
plain case is a subset FastAPI accepts with the same values (tests/api/test_create_fast.py compares both
paths' statuses and bytes). The rate budget is spent once either way (`admit_subject`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from booking_api.auth import Principal
from booking_api.edge.ratelimit import admit_subject
from booking_api.schemas import BookingCreate
from booking_api.verifier import Verifier

KEY_MAX = 255
# Visible ASCII only: anything else (spaces, latin-1, empty) is left to FastAPI's header handling.
_KEY = re.compile(rb"[!-~]{1,%d}" % KEY_MAX)
_TOKEN = re.compile(rb"[A-Za-z0-9._~+/=-]+")


def plain_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(bearer token, Idempotency-Key) of a plain create's headers, or None: FastAPI must read them."""
    token = key = None
    content_type = False
    for name, value in headers:
        if name == b"authorization":
            if token is not None or not value.startswith(b"Bearer "):
                return None
            raw = value[7:]
            if _TOKEN.fullmatch(raw) is None:
                return None
            token = raw.decode()
        elif name == b"idempotency-key":
            if key is not None or _KEY.fullmatch(value) is None:
                return None
            key = value.decode()
        elif name == b"content-type":
            if content_type or value != b"application/json":
                return None
            content_type = True
    if token is None or key is None or not content_type:
        return None
    return token, key


# What the route does with a plain request: the create's answer (the same function FastAPI's path calls).
Create = Callable[[Request, str, BookingCreate, str, datetime], Awaitable[Response]]


def booking_create_route(create: Create) -> type[APIRoute]:
    """An APIRoute class whose plain requests skip FastAPI's dependency solving (module docstring).

    The route's endpoint must answer as `create` does for the same caller, body, key and time.
    """

    class BookingCreateRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            fastapi_handler = super().get_route_handler()

            async def handler(request: Request) -> Response:
                if request.app.dependency_overrides:
                    return await fastapi_handler(request)
                plain = plain_headers(request.scope["headers"])
                if plain is None:
                    return await fastapi_handler(request)
                token, key = plain
                now = datetime.now(UTC)
                verifier: Verifier = request.app.state.verifier
                principal: Principal | None = verifier.cached(token, now)
                if principal is None or principal.role != "patient":
                    return await fastapi_handler(request)
                try:
                    data = BookingCreate.model_validate_json(await request.body())
                except ValidationError:
                    return await fastapi_handler(request)  # the body is cached on the request
                await admit_subject(request, principal.actor)
                return await create(request, principal.subject, data, key, now)

            return handler

    return BookingCreateRoute
