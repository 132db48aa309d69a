"""Partial indexes for the SVIP work's own looks: open priority notices, unpublished events by topic.

The dispatcher hands SVIP and urgent notices over before a standard backlog, and while it sends a large
standard batch it looks for new ones every few sends (booking_core.db.notify_outbox). With only the
(completed_at, not_before) index that look read every open notice: 2.9 ms behind 20,000 open standard
ones (EXPLAIN ANALYZE, PostgreSQL), as long as the sends it was to interleave. This index holds only the
open priority notices, so the look reads those few.

The relay publishes the SVIP result topics in a loop of its own (booking_workers.relay), which looks
for their unpublished events every 20 ms; (topic, id) over the unpublished events lets that look read
only its topics' rows, not every unpublished event of a standard batch.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_notification_intents_priority"
# Frozen here: booking_core.db.models_notify.PRIORITY_OPEN as of this revision.
PREDICATE = "completed_at IS NULL AND (tier != 'standard' OR urgent IS true)"


OUTBOX_INDEX = "ix_outbox_unpublished_topic"
UNPUBLISHED = "published_at IS NULL"


def upgrade() -> None:
    op.create_index(
        OUTBOX_INDEX,
        "outbox",
        ["topic", "id"],
        postgresql_where=sa.text(UNPUBLISHED),
        sqlite_where=sa.text(UNPUBLISHED),
    )
    op.create_index(
        INDEX,
        "notification_intents",
        ["id"],
        postgresql_where=sa.text(PREDICATE),
        sqlite_where=sa.text(PREDICATE),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="notification_intents")
    op.drop_index(OUTBOX_INDEX, table_name="outbox")
