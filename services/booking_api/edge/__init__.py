"""The HTTP edge: security headers, size and rate limits, request ids, the access audit, offline docs."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from booking_api.edge.audit import DeniedAccessAuditMiddleware
from booking_api.edge.docs import install_docs
from booking_api.edge.headers import SecurityHeadersMiddleware
from booking_api.edge.ratelimit import EdgeLimiter, RateLimitMiddleware
from booking_api.edge.requestid import RequestIdMiddleware
from booking_api.edge.size import RequestSizeLimitMiddleware
from booking_api.errors import ErrorResponse, Responses
from booking_api.settings import ApiSettings

# Every operation may answer these: the edge refuses before any route runs.
EDGE_RESPONSES: Responses = {
    413: {"model": ErrorResponse, "description": "The request body is larger than the limit"},
    429: {
        "model": ErrorResponse,
        "description": "Too many requests; retry after the given delay",
        "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    },
    431: {"model": ErrorResponse, "description": "The request headers are larger than the limit"},
}


def install_edge(app: FastAPI, settings: ApiSettings, session_factory: sessionmaker[Session]) -> None:
    """Add the edge middleware (call last: the last added runs first) and the /docs page."""
    install_docs(app)
    limiter = EdgeLimiter(settings)
    app.state.edge_limiter = limiter
    # Added innermost first. Request order: proxy headers, security headers, request id, size limits,
    # rate limits, access audit, then the app.
    app.add_middleware(DeniedAccessAuditMiddleware, session_factory=session_factory)
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    app.add_middleware(
        RequestSizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
