"""Append-only audit of refused requests (see booking_core.db.models_audit).

UPDATE and DELETE on access_denied_log, and on the PHI-read log phi_audit_log, are refused by triggers on
both backends (TRUNCATE too on PostgreSQL), so neither the API nor someone holding the application's
database role can rewrite who read or was denied what.

Revision ID: 0006
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "access_denied_log"
# Both audit trails: the new one, and the PHI-read log of revision 0001, which nothing may rewrite either.
APPEND_ONLY = (TABLE, "phi_audit_log")
FUNCTION = "audit_append_only"

PG_UP = [
    f"""
    CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    *(
        f"""
        CREATE TRIGGER {t}_no_update_delete BEFORE UPDATE OR DELETE ON {t}
        FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()
        """
        for t in APPEND_ONLY
    ),
    *(
        f"""
        CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t}
        FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()
        """
        for t in APPEND_ONLY
    ),
]
PG_DOWN = [
    *(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}" for t in APPEND_ONLY),
    *(f"DROP TRIGGER IF EXISTS {t}_no_update_delete ON {t}" for t in APPEND_ONLY),
    f"DROP FUNCTION IF EXISTS {FUNCTION}()",
]
SQLITE_UP = [
    f"""
    CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t}
    BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END
    """
    for t in APPEND_ONLY
    for verb in ("UPDATE", "DELETE")
]
SQLITE_DOWN = [f"DROP TRIGGER IF EXISTS {t}_no_{verb}" for t in APPEND_ONLY for verb in ("update", "delete")]


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index("ix_access_denied_log_actor_at", TABLE, ["actor", "at"], unique=False)
    for stmt in PG_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in PG_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(stmt)
    op.drop_index("ix_access_denied_log_actor_at", table_name=TABLE)
    op.drop_table(TABLE)
