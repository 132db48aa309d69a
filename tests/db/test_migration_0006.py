"""Revision 0006: access_denied_log matches its model; both audit tables refuse rewrites; down and up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.exc import DatabaseError

from booking_core.db.migrate import downgrade, upgrade
from booking_core.db.models_audit import AccessDeniedLog
from booking_core.db.session import make_engine

TABLES = {"access_denied_log"}
LATER_INDEXES = {"ix_access_denied_log_at"}  # revision 0008's


def test_0006_matches_the_model_and_downgrades(db_url: str) -> None:
    upgrade(db_url, "0006")
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, type_, parent: type_ != "table" or name in TABLES,
                    "include_object": lambda obj, name, type_, reflected, other: name not in LATER_INDEXES,
                },
            )
            mine = MetaData()
            AccessDeniedLog.__table__.to_metadata(mine)
            assert compare_metadata(ctx, mine) == []
        with eng.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO access_denied_log (at, actor, status, reason, method, route) "
                    "VALUES (:at, 'anonymous', 401, 'unauthorized', 'GET', '/x')"
                ),
                {"at": datetime.now(UTC)},
            )
            conn.execute(
                text(
                    "INSERT INTO phi_audit_log (actor, patient_id, resource_type, resource_id, action, at) "
                    "VALUES ('patient:p', 'p', 'DiagnosticReport', '*', 'list', :at)"
                ),
                {"at": datetime.now(UTC)},
            )
        for stmt in ("UPDATE access_denied_log SET actor = 'x'", "DELETE FROM phi_audit_log"):
            with pytest.raises(DatabaseError, match="append-only"), eng.begin() as conn:
                conn.execute(text(stmt))
        downgrade(db_url, "0005")
        assert "access_denied_log" not in inspect(eng).get_table_names()
        with eng.begin() as conn:  # the trigger went with the revision
            assert conn.execute(text("DELETE FROM phi_audit_log")).rowcount == 1
        upgrade(db_url, "0006")
    finally:
        eng.dispose()
