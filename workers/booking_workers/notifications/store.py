"""Delivery claims and attempt records on notification_deliveries / notification_attempts.

A claim is a short committed transaction, so no database lock is held while a provider is called:
1. insert the delivery row as `sending` with a lease (a unique dedupe key: the first caller wins);
2. or take over a row that is `retrying`, or `sending` with an expired lease (its worker died mid-send);
3. otherwise it is sent, failed for good, or in flight elsewhere: do nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any, cast

from sqlalchemy import BigInteger, Connection, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from booking_core.db import notify_outbox
from booking_core.db.models import Notification
from booking_core.db.models_notify import NotificationAttempt, NotificationDelivery
from booking_workers.notifications import pgraw

# uuid5 namespace for notification ids: stable per dedupe key, so providers see one idempotency key.
_NS = uuid.UUID("6f1c7f5e-3c3a-4f0e-9a59-2f6a3c1d9b10")
_T = cast(Table, NotificationDelivery.__table__)
# record() runs Core statements on the tables, not ORM-enabled ones: the ORM bulk UPDATE/INSERT paths
# (session synchronisation, mapper lookups) cost ~0.5 ms of CPU per attempt under the GIL, and nothing
# here needs the identity map. Column defaults and types are the same either way.
_A = cast(Table, NotificationAttempt.__table__)
# The worker runs claims and records on an autocommit Core connection on PostgreSQL (no ORM Session
# bookkeeping per statement), in a Session's transaction elsewhere; both execute and commit alike.
Db = Connection | Session


def _dialect(db: Db) -> str:
    return db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name


@dataclass(frozen=True)
class DeliveryKey:
    """What makes a message unique: one send per (patient, event, ref, cause, channel).

    The cause is what the notice is about (the booking event's id, a reminder's appointment time): each
    reschedule of one booking is its own notice, each redelivery of one notice the same.
    """

    patient_id: str
    event_type: str
    ref_id: str
    channel: str
    cause: str = ""

    @property
    def dedupe_key(self) -> str:
        """The unique key stored with the delivery."""
        if not self.cause:
            return f"{self.patient_id}:{self.event_type}:{self.ref_id}:{self.channel}"
        return f"{self.patient_id}:{self.event_type}:{self.ref_id}:{self.cause}:{self.channel}"

    @cached_property
    def notification_id(self) -> str:
        """Opaque id derived from the key: safe for logs, provider references and idempotency keys.

        Cached: a job reads it for the claim, the send, the record and its logs (a SHA-1 each time)."""
        return str(uuid.uuid5(_NS, self.dedupe_key))


@dataclass(frozen=True)
class Claim:
    """The right to attempt one delivery now."""

    key: DeliveryKey
    token: str
    attempt: int


# Statements built once per dialect and executed with parameters: building and cache-keying an
# INSERT/UPDATE per call cost more CPU than running it (issue 15's profile).
_P: dict[str, BindParameter[Any]] = {
    name: bindparam(f"p_{name}")
    for name in ("id", "key", "token", "until", "now", "status", "error", "finished", "sent")
}


@lru_cache(maxsize=4)
def _claim_new(dialect: str) -> Any:
    ins = postgresql.insert(_T) if dialect == "postgresql" else sqlite.insert(_T)
    return (
        ins.values(
            id=_P["id"],
            dedupe_key=_P["key"],
            patient_id=bindparam("p_patient"),
            event_type=bindparam("p_event"),
            ref_id=bindparam("p_ref"),
            channel=bindparam("p_channel"),
            attempts=1,
            created_at=_P["now"],
            status="sending",
            claim_token=_P["token"],
            claimed_until=_P["until"],
            updated_at=_P["now"],
        )
        .on_conflict_do_nothing()
        .returning(_T.c.id)
    )


# Take over a delivery left to retry, or one whose claimant's lease lapsed (it died mid-send).
_TAKE_OVER = (
    update(_T)
    .where(
        _T.c.dedupe_key == _P["key"],
        or_(_T.c.status == "retrying", and_(_T.c.status == "sending", _T.c.claimed_until < _P["now"])),
    )
    .values(
        attempts=_T.c.attempts + 1,
        status="sending",
        claim_token=_P["token"],
        claimed_until=_P["until"],
        updated_at=_P["now"],
    )
    .returning(_T.c.attempts)
)


def claim(session: Db, key: DeliveryKey, *, now: datetime, lease: timedelta) -> Claim | None:
    """Claim the delivery for one attempt (committed), or None when it must not be attempted now.

    Each step is one statement, so on an autocommit session (the worker's on PostgreSQL) a first claim
    is one round trip: no BEGIN, no COMMIT; there it runs on libpq itself (pgraw).
    """
    token = str(uuid.uuid4())
    params = {
        "p_id": key.notification_id,
        "p_key": key.dedupe_key,
        "p_patient": key.patient_id,
        "p_event": key.event_type,
        "p_ref": key.ref_id,
        "p_channel": key.channel,
        "p_token": token,
        "p_until": now + lease,
        "p_now": now,
    }
    link = pgraw.driver(session)
    if link is not None:  # each statement commits on its own
        if _PG_CLAIM_NEW.execute(link, params):
            return Claim(key=key, token=token, attempt=1)
        rows = _PG_TAKE_OVER.execute(link, params)
        return Claim(key=key, token=token, attempt=rows[0][0]) if rows else None
    # RETURNING, not rowcount: an INSERT through a Session reports rowcount -1 on some drivers.
    inserted = session.execute(_claim_new(_dialect(session)), params).first()
    if inserted is not None:
        session.commit()
        return Claim(key=key, token=token, attempt=1)
    attempt = session.execute(_TAKE_OVER, params).scalar_one_or_none()
    session.commit()
    return None if attempt is None else Claim(key=key, token=token, attempt=attempt)


def in_flight_until(session: Session, key: DeliveryKey, *, now: datetime) -> datetime | None:
    """When another worker's claim on this delivery lapses, if one holds it now; None otherwise."""
    until = session.execute(
        select(NotificationDelivery.claimed_until).where(
            NotificationDelivery.dedupe_key == key.dedupe_key,
            NotificationDelivery.status == "sending",
            NotificationDelivery.claimed_until >= now,
        )
    ).scalar_one_or_none()
    return until


_RELEASE = (
    update(_T)
    .where(_T.c.id == _P["id"], _T.c.claim_token == _P["token"])
    .values(
        status=_P["status"],
        claim_token=None,
        claimed_until=None,
        last_error_class=_P["error"],
        updated_at=_P["finished"],
        sent_at=_P["sent"],
    )
)
_ATTEMPT = insert(_A).values(
    delivery_id=_P["id"],
    attempt=bindparam("p_attempt"),
    channel=bindparam("p_channel"),
    outcome=bindparam("p_outcome"),
    error_class=_P["error"],
    message_id=bindparam("p_message"),
    started_at=bindparam("p_started"),
    finished_at=_P["finished"],
    duration_ms=bindparam("p_duration"),
)
# A notice's outbox row, completed with its last attempt's record when that finishes the notice (a NULL
# id completes nothing): a job from the outbox paid a transaction of its own for it, three round trips.
_COMPLETE = notify_outbox.completion(bindparam("p_intent", type_=BigInteger), _P["finished"])
# PostgreSQL: the release, the attempt row and the completion in one statement (a data-modifying CTE
# runs whether or not the INSERT reads it), atomic on its own, so one round trip on an autocommit session.
_RECORD_PG = _ATTEMPT.add_cte(_RELEASE.cte("released"), _COMPLETE.cte("completed"))
# The same statements for psycopg directly (pgraw), compiled once.
_PG_CLAIM_NEW = pgraw.Statement(_claim_new("postgresql"))
_PG_TAKE_OVER = pgraw.Statement(_TAKE_OVER)
_PG_RECORD = pgraw.Statement(_RECORD_PG)


def record(
    session: Db,
    c: Claim,
    *,
    outcome: str,
    status: str,
    error_class: str | None,
    started_at: datetime,
    finished_at: datetime,
    message_id: str | None,
    complete_intent: int | None = None,
) -> None:
    """Store the attempt's outcome and release the claim (committed), and complete the notice's outbox
    row `complete_intent` in the same commit when this attempt finishes the notice."""
    params = {
        "p_id": c.key.notification_id,
        "p_token": c.token,
        "p_status": status,
        "p_error": error_class,
        "p_finished": finished_at,
        "p_sent": finished_at if status == "sent" else None,
        "p_attempt": c.attempt,
        "p_channel": c.key.channel,
        "p_outcome": outcome,
        "p_message": message_id,
        "p_started": started_at,
        "p_duration": int((finished_at - started_at).total_seconds() * 1000),
        "p_intent": complete_intent,
    }
    link = pgraw.driver(session)
    if link is not None:  # autocommit: committed on its own
        _PG_RECORD.execute(link, params)
        return
    if _dialect(session) == "postgresql":
        session.execute(_RECORD_PG, params)
    else:
        session.execute(_RELEASE, params)
        session.execute(_ATTEMPT, params)
        if complete_intent is not None:
            session.execute(_COMPLETE, params)
    session.commit()


def write_inbox(session: Db, *, key: DeliveryKey, title: str, body: str, now: datetime) -> None:
    """The in-app channel: one inbox row per dedupe key (idempotent), committed."""
    ins = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    session.execute(
        ins(cast(Table, Notification.__table__))
        .on_conflict_do_nothing()
        .values(
            id=key.notification_id,
            patient_id=key.patient_id,
            kind=key.event_type,
            title=title,
            body=body,
            dedupe_key=key.dedupe_key,
            created_at=now,
        )
    )
    session.commit()
