"""Idempotency keys: the first successful answer to a POST is stored and replayed for retries.

The key row is inserted first in the request's transaction, so a concurrent retry with the same key
waits on the unique index (PostgreSQL) and then replays the committed answer. Failed requests roll the
row back with everything else: only successes are remembered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_api.errors import UnprocessableError
from booking_core.db.models import IdempotencyKey
from booking_core.db.session import rollback_on_error
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


@dataclass(frozen=True)
class Outcome:
    """The answer to a creating POST and whether it replays an earlier one."""

    status_code: int
    body: Any
    replayed: bool


def staff_subject(subject: str) -> str:
    """The key owner for a staff member: kept apart from patient ids, within the column's 64 characters."""
    owner = f"staff:{subject}"
    if len(owner) > 64:
        owner = f"staff:{hashlib.sha256(subject.encode()).hexdigest()[:58]}"
    return owner


def run_once(
    *,
    session: Session,
    subject: str,
    key: str | None,
    route: str,
    body: Any,
    now: datetime,
    create: Callable[[], BaseModel],
    status_code: int = 201,
) -> Outcome:
    """Run `create` (which flushes, never commits) and commit its answer with the key row, or replay.

    Without a key the change simply commits. `route` is the concrete path (path parameters included),
    so one key cannot replay the answer of another resource.
    """
    row: IdempotencyKey | None = None
    if key is not None:
        claimed = claim(
            session=session, subject=subject, key=key, fingerprint=request_hash(route, body), now=now
        )
        if isinstance(claimed, StoredResponse):
            return Outcome(status_code=claimed.status_code, body=claimed.body, replayed=True)
        row = claimed
    with rollback_on_error(session):
        out = create().model_dump(mode="json")
        if row is not None:
            record(row, status_code=status_code, body=out)
        session.commit()
    return Outcome(status_code=status_code, body=out, replayed=False)
