"""The per-minute tasks. Each is safe when two runs overlap: every row is claimed by a conditional
UPDATE that only one transaction can win (`... WHERE id = :id AND reminder_24h_sent_at IS NULL`),
and deletes of expired rows are idempotent. Each task returns how many rows it acted on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from booking_core.db.bookings import cancel_booking, free_place
from booking_core.db.models import (
    Booking,
    BookingStatusHistory,
    Hold,
    IdempotencyKey,
    OutboxMessage,
    Patient,
    ProcessedMessage,
)
from booking_core.domain.bookings import BookingStatus, CancelReason
from booking_core.domain.holds import HoldStatus
from booking_core.domain.notifications import NotificationKind
from booking_core.events.bookings import BookingNoShow
from booking_core.outbox import add_event

log = logging.getLogger(__name__)

BATCH = 500
ACTOR = "system:cron"


class EnqueueNotification(Protocol):
    """booking_core.broker.enqueue_notification's shape."""

    def __call__(
        self, *, patient_id: str, event_type: str, ref_id: str, tier: str = ..., urgent: bool = ...
    ) -> Any: ...


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def send_reminders(
    sessions: sessionmaker[Session], *, kind: str, now: datetime, enqueue: EnqueueNotification
) -> int:
    """Queue the 24 h (or 2 h) reminder of each booked appointment in its window, each exactly once.

    Claim and enqueue share a transaction: if the enqueue fails the claim rolls back and the next run
    tries again; if the commit fails after the enqueue, the next run enqueues again and the worker's
    dedupe key (patient, event, booking, channel) still sends once.
    """
    sent_col: InstrumentedAttribute[datetime | None]
    if kind == "24h":
        sent_col, event, lo, hi = Booking.reminder_24h_sent_at, NotificationKind.REMINDER_24H, 2, 24
    elif kind == "2h":
        sent_col, event, lo, hi = Booking.reminder_2h_sent_at, NotificationKind.REMINDER_2H, 0, 2
    else:
        raise ValueError(kind)
    # The 2 h reminder is urgent: held until morning it would arrive after the appointment.
    urgent = kind == "2h"
    window: list[ColumnElement[bool]] = [
        Booking.status == BookingStatus.BOOKED.value,
        sent_col.is_(None),
        Booking.starts_at > now + timedelta(hours=lo),
        Booking.starts_at <= now + timedelta(hours=hi),
    ]
    done = 0
    seen: set[str] = set()
    while True:
        with sessions() as session:
            rows = session.execute(
                select(Booking.id, Booking.patient_id, Patient.tier)
                .join(Patient, Patient.id == Booking.patient_id)
                .where(*window, Booking.id.not_in(seen) if seen else Booking.id.is_not(None))
                .order_by(Booking.starts_at)
                .limit(BATCH)
            ).all()
        if not rows:
            return done
        for booking_id, patient_id, tier in rows:
            seen.add(booking_id)
            with sessions() as session:
                claimed = session.execute(
                    update(Booking)
                    .where(Booking.id == booking_id, *window)
                    .values({sent_col: now})
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(claimed) != 1:
                    session.rollback()  # another run claimed it first
                    continue
                enqueue(
                    patient_id=patient_id, event_type=event.value, ref_id=booking_id, tier=tier, urgent=urgent
                )
                session.commit()
                done += 1


def expire_holds(sessions: sessionmaker[Session], *, now: datetime) -> int:
    """Expire active holds past their time; a still-pending booking is cancelled and its place freed."""
    done = 0
    while True:
        with sessions() as session:
            holds = session.execute(
                select(Hold.id, Hold.slot_id, Hold.booking_id)
                .where(Hold.status == HoldStatus.ACTIVE.value, Hold.expires_at <= now)
                .order_by(Hold.expires_at)
                .limit(BATCH)
            ).all()
        if not holds:
            return done
        for hold_id, slot_id, booking_id in holds:
            with sessions() as session:
                if not _expire_hold(
                    session, hold_id=hold_id, slot_id=slot_id, booking_id=booking_id, now=now
                ):
                    session.rollback()  # another run, a cancellation or a confirmation got there first
                    continue
                session.commit()
                done += 1


def _expire_hold(
    session: Session, *, hold_id: str, slot_id: str, booking_id: str | None, now: datetime
) -> bool:
    """Expire one hold, cancelling its still-pending booking; False when it is no longer active."""
    if booking_id is not None:
        # The booking's row first, as the API and the consumers lock it (then slot, then hold): a patient
        # cancelling this booking meanwhile queues behind us, or we behind them, instead of deadlocking.
        status = session.scalar(select(Booking.status).where(Booking.id == booking_id).with_for_update())
        if status == BookingStatus.PENDING.value:
            # The booking's status is the claim; the winner frees the place and marks the hold expired.
            return cancel_booking(
                session,
                booking_id=booking_id,
                from_status=BookingStatus.PENDING.value,
                reason=CancelReason.HOLD_EXPIRED.value,
                actor=ACTOR,
                cancelled_by="system",
                now=now,
                hold_status=HoldStatus.EXPIRED,
            )
    won = session.execute(
        update(Hold)
        .where(Hold.id == hold_id, Hold.status == HoldStatus.ACTIVE.value)
        .values(status=HoldStatus.EXPIRED.value)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(won) != 1:
        return False
    # A booking cancelled or confirmed meanwhile has already given its place back, or keeps it; a hold
    # without a booking (nothing else writes it) gives its own place back.
    if booking_id is None:
        free_place(session, slot_id)
    return True


def mark_noshows(sessions: sessionmaker[Session], *, now: datetime, grace: timedelta) -> int:
    """Booked appointments that started more than `grace` ago without a check-in become no-shows."""
    cond = [Booking.status == BookingStatus.BOOKED.value, Booking.starts_at < now - grace]
    done = 0
    while True:
        with sessions() as session:
            rows = session.execute(
                select(Booking.id, Booking.patient_id).where(*cond).order_by(Booking.starts_at).limit(BATCH)
            ).all()
        if not rows:
            return done
        for booking_id, patient_id in rows:
            with sessions() as session:
                won = session.execute(
                    update(Booking)
                    .where(Booking.id == booking_id, *cond)
                    .values(status=BookingStatus.NOSHOW.value, version=Booking.version + 1, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(won) != 1:
                    session.rollback()
                    continue
                session.add(
                    BookingStatusHistory(
                        booking_id=booking_id,
                        from_status=BookingStatus.BOOKED.value,
                        to_status=BookingStatus.NOSHOW.value,
                        reason="noshow_grace_passed",
                        actor=ACTOR,
                        at=now,
                    )
                )
                add_event(
                    session, BookingNoShow(booking_id=booking_id, patient_id=patient_id), occurred_at=now
                )
                session.commit()
                done += 1


def _purge(sessions: sessionmaker[Session], model: Any, *conds: ColumnElement[bool]) -> int:
    """Delete matching rows in batches (short transactions, no long table locks)."""
    done = 0
    while True:
        with sessions() as session:
            ids = select(model.id).where(*conds).limit(5_000).scalar_subquery()
            n = _rowcount(session.execute(delete(model).where(model.id.in_(ids))))
            session.commit()
        done += n
        if n == 0:
            return done


def cleanup_outbox(sessions: sessionmaker[Session], *, now: datetime, retention: timedelta) -> int:
    """Delete outbox rows published before the retention cut-off."""
    return _purge(
        sessions,
        OutboxMessage,
        OutboxMessage.published_at.is_not(None),
        OutboxMessage.published_at < now - retention,
    )


def cleanup_processed_messages(
    sessions: sessionmaker[Session], *, now: datetime, retention: timedelta
) -> int:
    """Delete consumer dedupe keys older than the retention (redeliveries come much sooner)."""
    return _purge(sessions, ProcessedMessage, ProcessedMessage.processed_at < now - retention)


def cleanup_idempotency_keys(sessions: sessionmaker[Session], *, now: datetime, retention: timedelta) -> int:
    """Delete Idempotency-Key answers older than the retention."""
    return _purge(sessions, IdempotencyKey, IdempotencyKey.created_at < now - retention)
