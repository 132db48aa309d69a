"""Event pipeline tables: consumer_offsets, lis_messages, dead_letters (see booking_core.db.models_events).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "consumer_offsets",
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", name=op.f("pk_consumer_offsets")),
    )
    op.create_table(
        "lis_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source_facility", sa.String(length=100), nullable=False),
        sa.Column("control_id", sa.String(length=100), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lis_messages")),
        sa.UniqueConstraint("source_facility", "control_id", name="uq_lis_messages_source"),
    )
    op.create_index("ix_lis_messages_patient_id", "lis_messages", ["patient_id"], unique=False)
    op.create_table(
        "dead_letters",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "consumer", "topic", "partition", "source_offset", name="uq_dead_letters_consumer_position"
        ),
    )
    op.create_index("ix_dead_letters_created_at", "dead_letters", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dead_letters_created_at", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_lis_messages_patient_id", table_name="lis_messages")
    op.drop_table("lis_messages")
    op.drop_table("consumer_offsets")
