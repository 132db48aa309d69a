"""Indexes for the slot search's keyset pages, in (starts_at, id) order.

EXPLAIN ANALYZE of a second page on PostgreSQL (307k slots, 40 clinics, 4 services, a week's window): a
clinic's page bitmap-scanned the (clinic, service, starts_at) unique index across every service and
sorted ~500 rows (1.5 ms); a service's page sorted 5,500 rows (9.3 ms); a search without a clinic ran a
parallel sequential scan (51 ms). With these each walks an index in page order and stops after limit + 1
rows (0.09, 0.19 and 0.12 ms).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_slots_clinic_starts_at_id", "slots", ["clinic_id", "starts_at", "id"])
    op.create_index("ix_slots_starts_at_id", "slots", ["starts_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_slots_starts_at_id", table_name="slots")
    op.drop_index("ix_slots_clinic_starts_at_id", table_name="slots")
