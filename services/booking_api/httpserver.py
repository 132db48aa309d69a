"""uvicorn options shared by `booking api` and `booking run`: the parser and its header-size bound."""

from __future__ import annotations

from typing import Any

from booking_api.settings import ApiSettings


def uvicorn_limits(settings: ApiSettings) -> dict[str, Any]:
    """Parser, header bound and proxy handling for uvicorn.run / uvicorn.Config."""
    return {
        "http": settings.http_parser,
        # The whole request head (request line and headers) that h11 buffers before refusing it.
        "h11_max_incomplete_event_size": settings.max_header_bytes + 1024,
        # The app trusts BOOKING_TRUSTED_PROXIES itself (booking_api.edge): uvicorn must not rewrite
        # the client and scheme first from its own, different list.
        "proxy_headers": False,
    }
