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
from sqlalchemy import bindparam, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking_api.errors import UnprocessableError
from booking_api.services import accounts
from booking_core.db import steps
from booking_core.db.lifecycle import AlsoInsert
from booking_core.db.models import IdempotencyKey
from booking_core.db.session import rollback_on_error
from booking_core.db.steps import Plan, Step
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
    # The row of the caller's read made in the claim's own statement (`claim_plan(then=...)`), if any.
    read: tuple[Any, ...] | None = None


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
# Prefixed names: the statement also runs inside the booking's own write (booking_core.db.lifecycle).
_RECORD = (
    update(IdempotencyKey)
    .where(IdempotencyKey.id == bindparam("idem_key_id"))
    .values(
        response_status=bindparam("idem_status", type_=IdempotencyKey.__table__.c.response_status.type),
        response_body=bindparam("idem_body", type_=IdempotencyKey.__table__.c.response_body.type),
    )
)


# A read that a claim makes in its own statement, after the key and only for a new one: a LATERAL subquery
# made from the new key's id column (booking_core.db.lifecycle.locked_slot_read).
Then = Callable[[Any], Any]


@lru_cache(maxsize=8)
def _claim_then(then: Then) -> Any:
    """On PostgreSQL, the claim with the account (as `_claim_statements`) and `then`'s row beside them."""
    new_key = _new_key("postgresql").cte("new_key")
    claimed = select(
        select(new_key.c.id).scalar_subquery().label("id"),
        accounts.ACTIVE.scalar_subquery().label("active"),
    ).subquery("claimed")
    read = then(claimed.c.id)
    return (
        select(claimed.c.id, claimed.c.active, *read.c)
        .select_from(claimed.outerjoin(read, true()))
        .add_cte(new_key)
    )


def _new_key(dialect: str) -> Any:
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


@lru_cache(maxsize=8)
def _claim_statements(dialect: str, check_account: bool) -> tuple[Any, ...]:
    """The insert that skips an existing key (returning the new row's id), and the account read.

    On PostgreSQL one statement answers both (the insert as a data-modifying CTE); elsewhere two.
    """
    new = _new_key(dialect)
    if not check_account:
        return (new,)
    if dialect != "postgresql":
        return (new, accounts.ACTIVE)
    new_key = new.cte("new_key")
    return (
        select(select(new_key.c.id).scalar_subquery(), accounts.ACTIVE.scalar_subquery()).add_cte(new_key),
    )


def claim_plan(
    dialect: str,
    *,
    subject: str,
    key: str,
    fingerprint: str,
    now: datetime,
    check_account: bool = False,
    then: Then | None = None,
    then_params: dict[str, Any] | None = None,
) -> Plan[ClaimedKey | StoredResponse]:
    """The stored answer for a replay, or a new key row (in the open transaction) to record the answer in,
    as a plan of statements (booking_core.db.steps): `claim` runs it on a session, the create on asyncpg.

    One round trip in the common case: the insert skips a key that exists. A concurrent request with the
    same key makes it wait on the unique index until that one commits (then the stored answer is read and
    replayed) or rolls back (then this insert goes ahead). With `check_account` (the subject is a patient)
    the same round trip reads the patient's account, and a deactivated one is refused before any replay,
    as PatientDep would (the caller rolls back).

    `then` (PostgreSQL, with `check_account`) adds the caller's read to the same statement, made after the
    key is claimed and only for a new key, with `then_params`; its row comes back in `ClaimedKey.read`.
    """
    params = {"key": key, "patient_id": subject, "request_hash": fingerprint, "created_at": now}
    read: tuple[Any, ...] | None = None
    if then is not None and dialect == "postgresql" and check_account:
        row = yield Step(_claim_then(then), {**(then_params or {}), **params}, "row")
        new, active, read = row[0], row[1], tuple(row[2:])
    elif len(statements := _claim_statements(dialect, check_account)) == 1 and check_account:
        new, active = yield Step(statements[0], params, "row")
    else:
        new = yield Step(statements[0], params, "scalar")
        active = (yield Step(statements[1], params, "scalar")) if check_account else None
    if accounts.is_deactivated(active):
        raise accounts.deactivated_error()
    if new is not None:
        return ClaimedKey(id=int(new), read=read)
    existing = yield Step(_FIND, params, "row")
    if existing is None:  # removed meanwhile by the retention clean-up: the client may retry
        raise ConflictError("a request with this Idempotency-Key is still in progress")
    return _check(existing[0], existing[1], existing[2], fingerprint)


def claim(
    *,
    session: Session,
    subject: str,
    key: str,
    fingerprint: str,
    now: datetime,
    check_account: bool = False,
) -> ClaimedKey | StoredResponse:
    """`claim_plan` on the session's connection."""
    conn = session.connection()
    plan = claim_plan(
        conn.dialect.name,
        subject=subject,
        key=key,
        fingerprint=fingerprint,
        now=now,
        check_account=check_account,
    )
    return steps.run(conn, plan)


@dataclass(frozen=True)
class Unclaimed:
    """No answer is stored for the key yet: the create may go ahead, storing its answer with its rows
    (`answer_insert`). `read` is the row of the caller's read made in the lookup's statement."""

    read: tuple[Any, ...]


# The key row as a conditional create inserts it: with its answer, in the booking's own statement.
_ANSWERED_KEY = AlsoInsert(
    IdempotencyKey,
    ("key", "patient_id", "request_hash", "created_at", "response_status", "response_body"),
    "idem_",
)


@lru_cache(maxsize=8)
def _lookup_beside(beside: Callable[[], Any]) -> Any:
    """The patient's account, the stored answer for the key (if any) and `beside()`'s row: one read."""
    account = select(accounts.ACTIVE.scalar_subquery().label("active")).subquery("account")
    stored = _FIND.subquery("stored")
    read = beside()
    return select(
        account.c.active, stored.c.request_hash, stored.c.response_status, stored.c.response_body, *read.c
    ).select_from(account.outerjoin(stored, true()).outerjoin(read, true()))


def lookup_plan(
    *,
    subject: str,
    key: str,
    fingerprint: str,
    beside: Callable[[], Any],
    beside_params: dict[str, Any],
    batch_by: str | None = None,
) -> Plan[StoredResponse | Unclaimed]:
    """The stored answer for a replay, or Unclaimed, for a patient's create that stores its answer in its
    own write (PostgreSQL, autocommit; `claim_plan` is the in-transaction way).

    One read, no row written: the account (a deactivated one is refused before any replay, as
    PatientDep would), the key's stored answer, and the caller's `beside()` read. The key row is inserted
    later with the answer, in the create's one write (`answer_insert`); a concurrent request with the same
    key then fails on the unique index, after the first one's commit, and replays it (`replay_plan`).
    `batch_by` (a parameter of `beside_params`) lets the driver send the read with other requests' reads
    (booking_core.db.steps.Step).
    """
    params = {"patient_id": subject, "key": key, **beside_params}
    # One row always (the account's subquery, the rest outer-joined), a read: batchable.
    row = yield Step(_lookup_beside(beside), params, "row", batch_by=batch_by)
    if accounts.is_deactivated(row[0]):
        raise accounts.deactivated_error()
    if row[1] is not None:
        return _check(row[1], row[2], row[3], fingerprint)
    return Unclaimed(read=tuple(row[4:]))


def answer_insert(
    *, subject: str, key: str, fingerprint: str, now: datetime, status_code: int, body: Any
) -> tuple[AlsoInsert, dict[str, Any]]:
    """The key row with its answer, as a row to insert in the create's own statement."""
    values = {
        "key": key,
        "patient_id": subject,
        "request_hash": fingerprint,
        "created_at": now,
        "response_status": status_code,
        "response_body": body,
    }
    return _ANSWERED_KEY, {f"idem_{k}": v for k, v in values.items()}


def key_taken(exc: IntegrityError) -> bool:
    """Whether the error is another request's row for the same key (the unique index on patient and key)."""
    return "uq_idempotency_keys_patient_key" in str(exc.orig)


def replay_plan(*, subject: str, key: str, fingerprint: str) -> Plan[StoredResponse]:
    """The answer stored for the key by the request that took it first."""
    existing = yield Step(_FIND, {"patient_id": subject, "key": key}, "row")
    if existing is None:  # removed meanwhile by the retention clean-up: the client may retry
        raise ConflictError("a request with this Idempotency-Key is still in progress")
    return _check(existing[0], existing[1], existing[2], fingerprint)


def record_write(claimed: ClaimedKey, *, status_code: int, body: Any) -> tuple[Any, dict[str, Any]]:
    """The write that stores the answer on the key row, as (statement, parameters) to run in the change."""
    return _RECORD, {"idem_key_id": claimed.id, "idem_status": status_code, "idem_body": body}


def record(session: Session, claimed: ClaimedKey, *, status_code: int, body: Any) -> None:
    """Store the answer on the key row (committed with the change)."""
    session.connection().execute(*record_write(claimed, status_code=status_code, body=body))


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
