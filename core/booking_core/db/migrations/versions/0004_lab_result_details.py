"""Lab results as LIS feeds send them: comments, sub-ids, misfit values, attachments, flags, cancelled.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('registered', 'preliminary', 'final', 'corrected', 'entered-in-error')"
NEW = "status IN ('registered', 'preliminary', 'final', 'corrected', 'entered-in-error', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("test_results") as batch:
        batch.add_column(sa.Column("comment", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_test_results_status"), type_="check")
        batch.create_check_constraint(op.f("ck_test_results_status"), NEW)
    with op.batch_alter_table("observations") as batch:
        batch.add_column(sa.Column("sub_id", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("value_flagged", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("attachment_kind", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("attachment_type", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("attachment_encoding", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("attachment_data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("flags", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("comment", sa.Text(), nullable=True))
        batch.alter_column("unit", type_=sa.String(length=100), existing_type=sa.String(length=32))
        batch.alter_column("reference_text", type_=sa.String(length=255), existing_type=sa.String(length=100))
        batch.drop_constraint(op.f("ck_observations_status"), type_="check")
        batch.create_check_constraint(op.f("ck_observations_status"), NEW)


def downgrade() -> None:
    op.execute("UPDATE observations SET status = 'entered-in-error' WHERE status = 'cancelled'")
    op.execute("UPDATE test_results SET status = 'entered-in-error' WHERE status = 'cancelled'")
    with op.batch_alter_table("observations") as batch:
        batch.drop_constraint(op.f("ck_observations_status"), type_="check")
        batch.create_check_constraint(op.f("ck_observations_status"), OLD)
        batch.alter_column("reference_text", type_=sa.String(length=100), existing_type=sa.String(length=255))
        batch.alter_column("unit", type_=sa.String(length=32), existing_type=sa.String(length=100))
        for column in (
            "comment",
            "flags",
            "attachment_data",
            "attachment_encoding",
            "attachment_type",
            "attachment_kind",
            "value_flagged",
            "sub_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("test_results") as batch:
        batch.drop_constraint(op.f("ck_test_results_status"), type_="check")
        batch.create_check_constraint(op.f("ck_test_results_status"), OLD)
        batch.drop_column("comment")
