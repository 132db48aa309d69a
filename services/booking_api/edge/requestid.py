"""X-Request-ID: a caller's id is kept only when it is a plain token, otherwise replaced by a fresh UUID.

The id is stored in the audit tables and echoed in logs and responses, so arbitrary bytes from the
client (control characters, markup, 10 kB strings) must never get that far. Every request leaves with
the id it was handled under.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
VALID = re.compile(rb"[A-Za-z0-9-]{1,64}")


def valid_request_id(value: bytes | None) -> str:
    """`value` when it is 1-64 letters, digits and hyphens (a UUID is), else a new UUID4."""
    if value is not None and VALID.fullmatch(value):
        return value.decode("ascii")
    return str(uuid.uuid4())


class RequestIdMiddleware:
    """Replaces a missing or malformed X-Request-ID in the request and echoes the one used."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [v for k, v in scope.get("headers", []) if k == HEADER]
        # Two X-Request-ID headers are as malformed as one bad one.
        request_id = valid_request_id(given[0] if len(given) == 1 else None)
        headers = [(k, v) for k, v in scope.get("headers", []) if k != HEADER]
        headers.append((HEADER, request_id.encode("ascii")))
        # In place, not a copy: outer middleware reads what the router adds to this scope (the route).
        scope["headers"] = headers

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
