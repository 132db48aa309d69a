"""Request size limits, enforced before the body is read: 431 for oversized headers, 413 for bodies.

A declared Content-Length over the limit is refused before a single body byte is received. A body
without one (chunked) is counted as it streams: the chunk that crosses the limit ends the request with
413, so the handler never parses more than the limit. uvicorn's h11 parser bounds the header block too
(`booking api` and `booking run` pass the same limit); this check also covers servers that do not.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_api.errors import error_body

CLOSE_AFTER = {"content-length", "transfer-encoding"}


class BodyTooLargeError(HTTPException):
    """The streamed body passed the limit, raised from receive().

    An HTTPException, because FastAPI turns any other error while reading the body into a 400; this one
    reaches the error handlers as 413 (and the middleware answers it itself when raised elsewhere).
    """

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


class RequestSizeLimitMiddleware:
    """431 when the header lines pass `max_header_bytes`, 413 when the body passes `max_body_bytes`."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        # Name, ": ", value and CRLF per line, as on the wire.
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.max_header_bytes:
            await _refuse(send, 431, "headers_too_large", "the request headers are too large")
            return
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, 413, "payload_too_large", "the request body is too large")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await _refuse(send, 413, "payload_too_large", "the request body is too large")


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of an oversized request is not read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
