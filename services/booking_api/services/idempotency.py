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
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
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


@dataclass(frozen=True)
class ClaimedKey:
    """A key row inserted in the open transaction, to record the answer on."""

    id: int


def _check(request_hash: str, status: int | None, body: Any, fingerprint: str) -> StoredResponse:
    if request_hash != fingerprint:
        raise UnprocessableError(
            "header.idempotency-key",
            "this Idempotency-Key was used for a different request",
            code="idempotency_key_reused",
        )
    if status is None:
        raise ConflictError("a request with this Idempotency-Key is still in progress")
    return StoredResponse(status_code=status, body=body)


# Built once per dialect and executed with parameters: building a statement per request costs more CPU
# than running it (issue 15's profile).
_FIND = select(
    IdempotencyKey.request_hash, IdempotencyKey.response_status, IdempotencyKey.response_body
).where(IdempotencyKey.patient_id == bindparam("patient_id"), IdempotencyKey.key == bindparam("key"))
_RECORD = (
    update(IdempotencyKey)
    .where(IdempotencyKey.id == bindparam("key_id"))
    .values(
        response_status=bindparam("status", type_=IdempotencyKey.__table__.c.response_status.type),
        response_body=bindparam("body", type_=IdempotencyKey.__table__.c.response_body.type),
    )
)


@lru_cache(maxsize=4)
def _insert_new(dialect: str) -> Any:
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(IdempotencyKey)
    return (
        ins.values(
            key=bindparam("key"),
            patient_id=bindparam("patient_id"),
            request_hash=bindparam("request_hash"),
            created_at=bindparam("created_at", type_=IdempotencyKey.__table__.c.created_at.type),
        )
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.patient_id, IdempotencyKey.key])
        .returning(IdempotencyKey.id)
    )


def claim(
    *, session: Session, subject: str, key: str, fingerprint: str, now: datetime
) -> ClaimedKey | StoredResponse:
    """The stored answer for a replay, or a new key row (in the open transaction) to record the answer in.

    One statement in the common case: the insert skips a key that exists. A concurrent request with the
    same key makes it wait on the unique index until that one commits (then the stored answer is read and
    replayed) or rolls back (then this insert goes ahead).
    """
    conn = session.connection()
    new = conn.scalar(
        _insert_new(conn.dialect.name),
        {"key": key, "patient_id": subject, "request_hash": fingerprint, "created_at": now},
    )
    if new is not None:
        return ClaimedKey(id=int(new))
    existing = conn.execute(_FIND, {"patient_id": subject, "key": key}).one_or_none()
    if existing is None:  # removed meanwhile by the retention clean-up: the client may retry
        raise ConflictError("a request with this Idempotency-Key is still in progress")
    return _check(existing[0], existing[1], existing[2], fingerprint)


def record(session: Session, claimed: ClaimedKey, *, status_code: int, body: Any) -> None:
    """Store the answer on the key row (committed with the change)."""
    session.connection().execute(_RECORD, {"key_id": claimed.id, "status": status_code, "body": body})


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
    row: ClaimedKey | None = None
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
            record(session, row, status_code=status_code, body=out)
        session.commit()
    return Outcome(status_code=status_code, body=out, replayed=False)
