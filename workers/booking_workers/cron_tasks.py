"""The per-minute tasks. Each is safe when two runs overlap: every row is claimed by a conditional
UPDATE that only one transaction can win (`... WHERE id = :id AND reminder_24h_sent_at IS NULL`), status
changes go through the booking unit of work (booking_core.db.lifecycle), and deletes of expired rows are
idempotent. Each task returns how many rows it acted on; a refused transition is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from booking_core.db import lifecycle
from booking_core.db.models import Booking, Hold, IdempotencyKey, OutboxMessage, Patient, ProcessedMessage
from booking_core.db.models_audit import ACCESS_DENIED_MIN_RETENTION_DAYS, AccessDeniedLog
from booking_core.db.notify_outbox import add_notice
from booking_core.db.session import rollback_on_error
from booking_core.domain.bookings import BookingStatus
from booking_core.domain.errors import DomainError
from booking_core.domain.holds import HoldStatus
from booking_core.domain.lifecycle import Decision, NoticeIntent
from booking_core.domain.notifications import NotificationKind

log = logging.getLogger(__name__)

BATCH = 500
ACTOR = "system:cron"


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def send_reminders(sessions: sessionmaker[Session], *, kind: str, now: datetime) -> int:
    """Owe the 24 h (or 2 h) reminder of each booked appointment in its window, each exactly once.

    The claim and the notice share a transaction. The notice's cause is the appointment time, so a
    booking moved after its reminder (the move clears the marker) is reminded again of the new time.
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
                select(Booking.id, Booking.patient_id, Booking.starts_at, Patient.tier)
                .join(Patient, Patient.id == Booking.patient_id)
                .where(*window, Booking.id.not_in(seen) if seen else Booking.id.is_not(None))
                .order_by(Booking.starts_at)
                .limit(BATCH)
            ).all()
        if not rows:
            return done
        for booking_id, patient_id, starts_at, tier in rows:
            seen.add(booking_id)
            with sessions() as session:
                claimed = session.execute(
                    update(Booking)
                    .where(Booking.id == booking_id, Booking.starts_at == starts_at, *window)
                    .values({sent_col: now})
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(claimed) != 1:
                    session.rollback()  # another run claimed it first, or the booking moved
                    continue
                add_notice(
                    session,
                    NoticeIntent(event, patient_id, booking_id, urgent=urgent),
                    cause=f"{booking_id}@{starts_at.isoformat()}",
                    now=now,
                    tier=tier,
                )
                session.commit()
                done += 1


def _refusable(task: str, session: Session, step: Callable[[Session], Decision]) -> Decision | None:
    """Run one transition; a refused one (domain error) is rolled back and logged, never fatal."""
    with rollback_on_error(session):
        try:
            return step(session)
        except DomainError as exc:
            session.rollback()
            log.warning("transition refused", extra={"task": task, "reason": exc.code})
            return None


def expire_holds(sessions: sessionmaker[Session], *, now: datetime) -> int:
    """Expire active holds past their time: a still-pending booking is cancelled and its place freed."""
    done = 0
    seen: set[str] = set()
    while True:
        with sessions() as session:
            ids = session.scalars(
                select(Hold.booking_id)
                .where(
                    Hold.status == HoldStatus.ACTIVE.value,
                    Hold.expires_at <= now,
                    Hold.booking_id.is_not(None),
                    Hold.booking_id.not_in(seen) if seen else Hold.id.is_not(None),
                )
                .order_by(Hold.expires_at)
                .limit(BATCH)
            ).all()
        if not ids:
            return done
        for booking_id in ids:
            assert booking_id is not None
            seen.add(booking_id)
            with sessions() as session:
                # A cancellation or confirmation that got there first leaves nothing to do.
                d = _refusable(
                    "expire_holds",
                    session,
                    partial(lifecycle.expire_hold, booking_id=booking_id, actor=ACTOR, now=now),
                )
                if d is not None and d.changed:
                    session.commit()
                    done += 1


def mark_noshows(sessions: sessionmaker[Session], *, now: datetime, grace: timedelta) -> int:
    """Booked appointments that started more than `grace` ago without a check-in become no-shows."""
    cond = [Booking.status == BookingStatus.BOOKED.value, Booking.starts_at < now - grace]
    done = 0
    seen: set[str] = set()
    while True:
        with sessions() as session:
            ids = session.scalars(
                select(Booking.id)
                .where(*cond, Booking.id.not_in(seen) if seen else Booking.id.is_not(None))
                .order_by(Booking.starts_at)
                .limit(BATCH)
            ).all()
        if not ids:
            return done
        for booking_id in ids:
            seen.add(booking_id)
            with sessions() as session:
                d = _refusable(
                    "mark_noshows",
                    session,
                    partial(
                        lifecycle.mark_noshow,
                        booking_id=booking_id,
                        actor=ACTOR,
                        now=now,
                        reason="noshow_grace_passed",
                    ),
                )
                if d is not None and d.changed:
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


def cleanup_access_denied_log(sessions: sessionmaker[Session], *, now: datetime, retention: timedelta) -> int:
    """Delete refused-request records older than the retention (at least 90 days).

    The table is append-only; its trigger lets a DELETE through only for rows older than 89 days
    (revision 0008), so a shorter retention is refused here rather than failing every run there.
    """
    if retention < timedelta(days=ACCESS_DENIED_MIN_RETENTION_DAYS):
        raise ValueError(f"access_denied_log retention must be >= {ACCESS_DENIED_MIN_RETENTION_DAYS} days")
    return _purge(sessions, AccessDeniedLog, AccessDeniedLog.at < now - retention)
