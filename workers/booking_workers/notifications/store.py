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
from typing import cast

from sqlalchemy import Table, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from booking_core.db.models import Notification
from booking_core.db.models_notify import NotificationAttempt, NotificationDelivery
from booking_core.db.session import insert_ignore

# uuid5 namespace for notification ids: stable per dedupe key, so providers see one idempotency key.
_NS = uuid.UUID("6f1c7f5e-3c3a-4f0e-9a59-2f6a3c1d9b10")
_T = cast(Table, NotificationDelivery.__table__)
# record() runs Core statements on the tables, not ORM-enabled ones: the ORM bulk UPDATE/INSERT paths
# (session synchronisation, mapper lookups) cost ~0.5 ms of CPU per attempt under the GIL, and nothing
# here needs the identity map. Column defaults and types are the same either way.
_A = cast(Table, NotificationAttempt.__table__)


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

    @property
    def notification_id(self) -> str:
        """Opaque id derived from the key: safe for logs, provider references and idempotency keys."""
        return str(uuid.uuid5(_NS, self.dedupe_key))


@dataclass(frozen=True)
class Claim:
    """The right to attempt one delivery now."""

    key: DeliveryKey
    token: str
    attempt: int


def claim(session: Session, key: DeliveryKey, *, now: datetime, lease: timedelta) -> Claim | None:
    """Claim the delivery for one attempt (committed), or None when it must not be attempted now."""
    token = str(uuid.uuid4())
    values = {
        "status": "sending",
        "claim_token": token,
        "claimed_until": now + lease,
        "updated_at": now,
    }
    inserted = session.execute(
        insert_ignore(session, _T)
        .values(
            id=key.notification_id,
            dedupe_key=key.dedupe_key,
            patient_id=key.patient_id,
            event_type=key.event_type,
            ref_id=key.ref_id,
            channel=key.channel,
            attempts=1,
            created_at=now,
            **values,
        )
        .returning(_T.c.id)
    )
    # RETURNING, not rowcount: an INSERT through a Session reports rowcount -1 on some drivers.
    if inserted.first() is not None:
        session.commit()
        return Claim(key=key, token=token, attempt=1)
    took = session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.dedupe_key == key.dedupe_key,
            or_(
                NotificationDelivery.status == "retrying",
                and_(NotificationDelivery.status == "sending", NotificationDelivery.claimed_until < now),
            ),
        )
        .values(attempts=NotificationDelivery.attempts + 1, **values)
    )
    if took.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return None
    attempt = session.execute(
        select(NotificationDelivery.attempts).where(NotificationDelivery.dedupe_key == key.dedupe_key)
    ).scalar_one()
    session.commit()
    return Claim(key=key, token=token, attempt=attempt)


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


def record(
    session: Session,
    c: Claim,
    *,
    outcome: str,
    status: str,
    error_class: str | None,
    started_at: datetime,
    finished_at: datetime,
    message_id: str | None,
) -> None:
    """Store the attempt's outcome and release the claim (committed)."""
    session.execute(
        update(_T)
        .where(_T.c.id == c.key.notification_id, _T.c.claim_token == c.token)
        .values(
            status=status,
            claim_token=None,
            claimed_until=None,
            last_error_class=error_class,
            updated_at=finished_at,
            sent_at=finished_at if status == "sent" else None,
        )
    )
    session.execute(
        insert(_A).values(
            delivery_id=c.key.notification_id,
            attempt=c.attempt,
            channel=c.key.channel,
            outcome=outcome,
            error_class=error_class,
            message_id=message_id,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=int((finished_at - started_at).total_seconds() * 1000),
        )
    )
    session.commit()


def write_inbox(session: Session, *, key: DeliveryKey, title: str, body: str, now: datetime) -> None:
    """The in-app channel: one inbox row per dedupe key (idempotent), committed."""
    session.execute(
        insert_ignore(session, Notification.__table__).values(
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
