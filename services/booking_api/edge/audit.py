"""Audit of refused access: every 401, every 403, and a 404 on a record route for a known caller.

A patient probing another patient's result gets the same 404 as for a missing one (no existence
oracle), so the trace of the attempt lives here: who asked (the verified subject, or "anonymous"), the
route template, the id they asked for, the request id and the client address. The record's contents or
owner are never looked up. Rows go to the append-only access_denied_log before the answer is sent; a
failed write is logged and the refusal still goes out (refusing is the safe side either way).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_api.edge.ratelimit import client_address
from booking_core.db.models_audit import ANONYMOUS, AccessDeniedLog

log = logging.getLogger(__name__)

REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


def denied_entry(scope: Scope, status: int) -> dict[str, Any] | None:
    """The audit row's values when this answer is a refusal worth recording, else None."""
    state: dict[str, Any] = scope.get("state") or {}
    actor = state.get("actor")
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    params: dict[str, Any] = scope.get("path_params") or {}
    if status not in REASONS or (status == 404 and not (actor and template and params)):
        return None
    request_id = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"")
    return {
        "actor": str(actor or ANONYMOUS)[:100],
        "status": status,
        "reason": REASONS[status],
        "method": str(scope.get("method", ""))[:8],
        "route": str(template or "unmatched")[:200],
        "resource_id": "/".join(str(v) for v in params.values())[:64] or None,
        "request_id": request_id.decode("latin-1")[:64] or None,
        "client": client_address(scope)[:64],
    }


class DeniedAccessAuditMiddleware:
    """Writes an access_denied_log row for each refusal before forwarding the answer."""

    def __init__(self, app: ASGIApp, *, session_factory: sessionmaker[Session]) -> None:
        self.app = app
        self.session_factory = session_factory

    def _write(self, entry: dict[str, Any]) -> None:
        try:
            with self.session_factory() as session:
                session.add(AccessDeniedLog(at=datetime.now(UTC), **entry))
                session.commit()
        except Exception as exc:
            log.error("access audit write failed", extra={"reason": type(exc).__name__})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def auditing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry = denied_entry(scope, int(message["status"]))
                if entry is not None:
                    await anyio.to_thread.run_sync(self._write, entry)
            await send(message)

        await self.app(scope, receive, auditing_send)
