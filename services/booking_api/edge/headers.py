"""Security headers on every response, decided once at the edge.

- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` everywhere.
- `Cache-Control: no-store` on every response to a request that carried credentials (it may hold PHI,
  and a shared proxy or the browser's disk cache must not keep it), and on refusals.
- A Content-Security-Policy: the docs pages may load only their own assets ('self'); every other
  response is data, so it gets `default-src 'none'`.
- `Strict-Transport-Security` only when the request came over TLS (directly, or as a trusted proxy said
  through X-Forwarded-Proto, which ProxyHeadersMiddleware has turned into the scope's scheme); over plain
  HTTP the header is ignored by browsers and would only mislead.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = "max-age=31536000; includeSubDomains"
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI needs its own script, stylesheet, images (some as data: URIs) and the OpenAPI document
# (connect-src); nothing from another origin, no inline script or style (its React sets styles through
# the CSSOM, which the policy allows). The Chromium test fails on any CSP violation it logs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PREFIX = "/docs"
ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (pure ASGI: streaming bodies are untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        is_docs = path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/")
        credentials = any(name in (b"authorization", b"cookie") for name, _ in scope.get("headers", []))
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS:
                    headers[name] = value
                headers["Content-Security-Policy"] = DOCS_CSP if is_docs else API_CSP
                if credentials or int(message["status"]) in (401, 403):
                    headers["Cache-Control"] = "no-store"
                if tls:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_headers)
