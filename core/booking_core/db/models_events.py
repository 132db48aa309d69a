"""Tables of the event pipeline that the core schema lacks (revision 0002 creates them).

- consumer_offsets: per consumer group, the last outbox id the embedded transport has handled (the
  outbox read as a log in `booking run`); Kafka keeps its own offsets.
- lis_messages: one row per stored HL7 message (MSH-4 + MSH-10 unique), giving results an opaque id
  to travel under instead of the LIS's control id.
- dead_letters: every message a consumer refused, with the reason and where it came from. No payload:
  it is PHI; the `<topic>.dlq` topic keeps the bytes for replay.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from booking_core.db.base import Base
from booking_core.db.models import ID, BigIntPK, UTCDateTime, new_id, utcnow

__all__ = ["ConsumerOffset", "DeadLetter", "LisMessage"]


class ConsumerOffset(Base):
    """The embedded transport's committed position of one consumer group on one topic."""

    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )


class LisMessage(Base):
    """An HL7 ORU^R01 message `lis-testresult` has stored."""

    __tablename__ = "lis_messages"
    __table_args__ = (UniqueConstraint("source_facility", "control_id", name="uq_lis_messages_source"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    source_facility: Mapped[str] = mapped_column(String(100), nullable=False)  # MSH-4
    control_id: Mapped[str] = mapped_column(String(100), nullable=False)  # MSH-10
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    tier: Mapped[str] = mapped_column(String(16), nullable=False)
    results: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class DeadLetter(Base):
    """A message a consumer dead-lettered; one row per source position."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint(
            "consumer", "topic", "partition", "source_offset", name="uq_dead_letters_consumer_position"
        ),
        Index("ix_dead_letters_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(100), nullable=False)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    source_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    detail: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
