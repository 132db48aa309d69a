"""Retention for access_denied_log: DELETE of rows older than 89 days only; an index for the cut-off.

Revision 0006 made access_denied_log append-only with triggers, so no retention was possible and the table
grew with every refused request (an attack writes a row per attempt). This revision narrows the DELETE
trigger instead of dropping it: a DELETE passes only for a row whose `at` is older than 89 days by the
database's own clock, anything else (UPDATE of any row, DELETE of a younger row, TRUNCATE) is still
refused. The narrowing is in the row's age, not in who asks: the application's database role can run the
retention and nothing more, and an intruder holding that role still cannot erase the trail of the last
three months. The cron's retention (`cleanup_access_denied_log`) accepts no less than 90 days, one day
above this floor so that a cron host's clock running ahead of the database's never deletes a row the
trigger refuses. phi_audit_log keeps revision 0006's trigger: nothing may delete a record of who read PHI.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "access_denied_log"
INDEX = "ix_access_denied_log_at"
FLOOR_DAYS = 89  # booking_core.db.models_audit.ACCESS_DENIED_MIN_RETENTION_DAYS - 1; frozen here
FUNCTION = "access_denied_log_retention_only"
MESSAGE = f"{TABLE} is append-only: only rows older than {FLOOR_DAYS} days may be deleted (retention)"

PG_UP = [
    f"""
    CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND OLD.at < now() - interval '{FLOOR_DAYS} days' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    f"DROP TRIGGER {TABLE}_no_update_delete ON {TABLE}",
    f"""
    CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()
    """,
]
PG_DOWN = [
    f"DROP TRIGGER {TABLE}_no_update_delete ON {TABLE}",
    f"""
    CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_append_only()
    """,
    f"DROP FUNCTION {FUNCTION}()",
]
# SQLite stores `at` as 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC), which sorts as text against strftime's
# 'YYYY-MM-DD HH:MM:SS.fff' of the same instant.
SQLITE_UP = [
    f"DROP TRIGGER {TABLE}_no_delete",
    f"""
    CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    WHEN OLD.at >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-{FLOOR_DAYS} days')
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]
SQLITE_DOWN = [
    f"DROP TRIGGER {TABLE}_no_delete",
    f"""
    CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END
    """,
]


def upgrade() -> None:
    # The retention deletes by `at` alone; (actor, at) cannot serve that range.
    op.create_index(INDEX, TABLE, ["at"])
    for stmt in PG_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in PG_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(stmt)
    op.drop_index(INDEX, table_name=TABLE)
