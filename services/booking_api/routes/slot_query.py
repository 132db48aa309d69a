"""The slot search's query string, read without FastAPI's per-request dependency solving when it is plain.

FastAPI validates a route's parameters by walking its dependency tree on every request: for the portal's
most frequent read that walk cost more CPU than the database read and the page's JSON together (issue
15's profile: solve_dependencies and request_params_to_args). `SlotSearchRoute` reads the common case
itself: every parameter at most once, known by name, its value plain ASCII within the declared limits (no
percent-escapes, no empty values). Anything else, and any app with dependency overrides (tests), takes
FastAPI's path, whose validation and 422 answers stay the only ones: the plain case is a subset FastAPI
accepts with the same values (tests/api/test_slot_pages.py compares the two paths).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from booking_api import cursors

# A portal shows a page of times, not a month of them.
DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_TEXT = 64  # clinic_id and service
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"

_TEXT = re.compile(rb"[A-Za-z0-9_-]{1,%d}" % MAX_TEXT)
_CURSOR = re.compile(rb"[A-Za-z0-9_-]{1,%d}" % cursors.MAX_CURSOR_CHARS)
_DATE = re.compile(rb"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_LIMIT = re.compile(rb"[1-9][0-9]{0,2}")


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """A slot search's parameters, as the route receives them."""

    clinic_id: str | None = None
    service: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


def parse_plain(query_string: bytes) -> SlotQuery | None:
    """The parameters of a plain query string, or None: FastAPI must read this one."""
    values: dict[bytes, bytes] = {}
    if query_string:
        for part in query_string.split(b"&"):
            key, eq, value = part.partition(b"=")
            if not eq or key in values:
                return None
            values[key] = value
    text: dict[str, Any] = {}
    for key, value in values.items():
        if key in (b"clinic_id", b"service"):
            if _TEXT.fullmatch(value) is None:
                return None
            text[key.decode()] = value.decode()
        elif key in (b"date_from", b"date_to"):
            day = _DATE.fullmatch(value)
            if day is None:
                return None
            try:
                text[key.decode()] = date(int(day[1]), int(day[2]), int(day[3]))
            except ValueError:
                return None
        elif key == b"limit":
            if _LIMIT.fullmatch(value) is None or int(value) > MAX_PAGE:
                return None
            text["limit"] = int(value)
        elif key == b"cursor":
            if _CURSOR.fullmatch(value) is None:
                return None
            text["cursor"] = value.decode()
        else:
            return None
    return SlotQuery(**text)


# What the route does with parsed parameters: the search's answer.
Search = Callable[[Request, SlotQuery, datetime], Awaitable[Response]]


def slot_search_route(search: Search, now: Callable[[], Awaitable[datetime]]) -> type[APIRoute]:
    """An APIRoute class whose plain requests skip FastAPI's parameter solving (module docstring).

    OpenAPI, routing and every other request stay FastAPI's own; the route's endpoint must answer as
    `search` does for the same parameters, `now` being the endpoint's clock dependency.
    """

    class SlotSearchRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            fastapi_handler = super().get_route_handler()

            async def handler(request: Request) -> Response:
                query = parse_plain(request.scope["query_string"])
                if query is None or request.app.dependency_overrides:
                    return await fastapi_handler(request)
                return await search(request, query, await now())

            return handler

    return SlotSearchRoute
