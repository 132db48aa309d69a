"""Idempotency keys: the first successful answer to a POST is stored and replayed for retries.

The key row is inserted first in the request's transaction, so a concurrent retry with the same key
waits on the unique index (PostgreSQL) and then replays the committed answer. Failed requests roll the
row back with everything else: only successes are remembered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_api.errors import UnprocessableError
from booking_core.db.models import IdempotencyKey
from booking_core.domain.errors import ConflictError

HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class StoredResponse:
    """A response recorded for an idempotency key."""

    status_code: int
    body: Any


def request_hash(route: str, body: Any) -> str:
    """A fingerprint of the request (route and canonical JSON body)."""
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check(row: IdempotencyKey, fingerprint: str) -> StoredResponse:
    if row.request_hash != fingerprint:
        raise UnprocessableError(
            "header.idempotency-key",
            "this Idempotency-Key was used for a different request",
            code="idempotency_key_reused",
        )
    if row.response_status is None:
        raise ConflictError("a request with this Idempotency-Key is still in progress")
    return StoredResponse(status_code=row.response_status, body=row.response_body)


def _find(session: Session, subject: str, key: str) -> IdempotencyKey | None:
    return session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.patient_id == subject, IdempotencyKey.key == key)
    )


def claim(
    *, session: Session, subject: str, key: str, fingerprint: str, now: datetime
) -> IdempotencyKey | StoredResponse:
    """The stored answer for a replay, or a new key row (in the open transaction) to record the answer in."""
    existing = _find(session, subject, key)
    if existing is not None:
        return _check(existing, fingerprint)
    row = IdempotencyKey(key=key, patient_id=subject, request_hash=fingerprint, created_at=now)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent request with the same key committed first: replay its answer.
        session.rollback()
        existing = _find(session, subject, key)
        if existing is None:
            raise ConflictError("a request with this Idempotency-Key is still in progress") from None
        return _check(existing, fingerprint)
    return row


def record(row: IdempotencyKey, *, status_code: int, body: Any) -> None:
    """Store the answer on the key row (committed with the change)."""
    row.response_status = status_code
    row.response_body = body
