"""Notification delivery tables (revision 0003): one row per dedupe key, one row per attempt.

- notification_deliveries: one per (patient, event, ref, channel); its unique `dedupe_key` makes retries
  and duplicate events send once. A worker claims a row (status `sending` with a lease) before it talks
  to a provider; a worker that dies mid-send leaves a lease that expires, so the retry may claim it.
- notification_attempts: every attempt and its outcome (sent, transient or permanent failure) with a
  PHI-free error class; append-only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from booking_core.db.base import Base
from booking_core.db.models import BigIntPK, UTCDateTime, utcnow

DELIVERY_STATUSES = ("sending", "sent", "retrying", "failed", "skipped")
# An open notice the dispatcher hands over first (an SVIP tier's, or urgent), as the index's predicate:
# written as SQLAlchemy renders notify_outbox's condition, so PostgreSQL proves the index applies.
PRIORITY_OPEN = "completed_at IS NULL AND (tier != 'standard' OR urgent IS true)"
ATTEMPT_OUTCOMES = ("sent", "transient_failure", "permanent_failure")


class NotificationDelivery(Base):
    """The state of one message on one channel; `id` is the opaque notification id used in logs."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        CheckConstraint(f"status IN {DELIVERY_STATUSES!r}", name="status"),
        Index("ix_notification_deliveries_patient_created_at", "patient_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    ref_id: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error_class: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationAttempt(Base):
    """One attempt on one channel and what came of it."""

    __tablename__ = "notification_attempts"
    __table_args__ = (CheckConstraint(f"outcome IN {ATTEMPT_OUTCOMES!r}", name="outcome"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("notification_deliveries.id", ondelete="CASCADE"), nullable=False, index=True
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    error_class: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))  # the Dramatiq message, for tracing
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class NotificationIntent(Base):
    """A notice owed to a patient, written in the transaction of the change that causes it (revision 0005).

    `intent_key` (the causing event's id and the kind) makes writing it idempotent; a dispatcher enqueues
    it after commit (`dispatched_at`), the worker marks it `completed_at` once every channel is done. One
    not completed a lease after dispatch is dispatched again: deliveries dedupe on the cause, so a second
    dispatch never sends twice.
    """

    __tablename__ = "notification_intents"
    __table_args__ = (
        Index("ix_notification_intents_pending", "completed_at", "not_before"),
        # The dispatcher's look for SVIP and urgent notices (revision 0009): only the open ones of those,
        # so the look costs the same behind a standard backlog of any size (notify_outbox.PRIORITY).
        Index(
            "ix_notification_intents_priority",
            "id",
            postgresql_where=text(PRIORITY_OPEN),
            sqlite_where=text(PRIORITY_OPEN),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    intent_key: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    ref_id: Mapped[str] = mapped_column(String(64), nullable=False)
    cause: Mapped[str] = mapped_column(String(128), nullable=False)
    tier: Mapped[str] = mapped_column(String(16), nullable=False, default="standard")
    urgent: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # W3C trace headers (traceparent/tracestate: no ids of ours), so the delivery joins the change's trace.
    trace_context: Mapped[str | None] = mapped_column(String(512))
