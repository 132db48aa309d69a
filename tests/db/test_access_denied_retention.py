"""access_denied_log has a retention (revision 0008) and stays append-only for everything else.

Before 0008 the triggers refused every DELETE, so the table only grew (issue 10's leftover). Now the
database lets a DELETE through for rows older than 89 days and nothing else; the cron deletes what is
older than the configured retention (default 365 days, at least 90).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, delete, func, insert, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from booking_core.db.migrate import downgrade, upgrade
from booking_core.db.models import PhiAuditLog
from booking_core.db.models_audit import AccessDeniedLog
from booking_workers import cron_tasks
from booking_workers.settings import CronSettings

AGES = {"ancient": 400, "old": 100, "young": 88, "fresh": 1}  # days


def _seed(sessions: sessionmaker[Session], now: datetime) -> None:
    with sessions() as s:
        s.execute(
            insert(AccessDeniedLog),
            [
                {
                    "at": now - timedelta(days=days),
                    "actor": actor,
                    "status": 401,
                    "reason": "unauthorized",
                    "method": "GET",
                    "route": "/api/v1/bookings",
                }
                for actor, days in AGES.items()
            ],
        )
        s.commit()


def _actors(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(AccessDeniedLog.actor)))


def _refused(sessions: sessionmaker[Session], stmt: object) -> None:
    with sessions() as s, pytest.raises(DatabaseError, match="append-only"):
        s.execute(stmt)  # type: ignore[call-overload]
        s.commit()


def test_the_database_lets_only_old_rows_be_deleted(sessions: sessionmaker[Session], engine: Engine) -> None:
    _seed(sessions, datetime.now(UTC))
    _refused(sessions, delete(AccessDeniedLog).where(AccessDeniedLog.actor == "young"))
    _refused(sessions, delete(AccessDeniedLog))  # one young row refuses the whole statement
    _refused(sessions, update(AccessDeniedLog).where(AccessDeniedLog.actor == "ancient").values(actor="x"))
    assert _actors(sessions) == ["ancient", "fresh", "old", "young"]
    with sessions() as s:
        assert s.execute(delete(AccessDeniedLog).where(AccessDeniedLog.actor == "old")).rowcount == 1
        s.commit()
    assert _actors(sessions) == ["ancient", "fresh", "young"]
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn, pytest.raises(DatabaseError, match="append-only"):
            conn.execute(text("TRUNCATE access_denied_log"))


def test_phi_audit_log_keeps_refusing_every_delete(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        s.add(
            PhiAuditLog(
                actor="patient:p",
                patient_id="p",
                resource_type="DiagnosticReport",
                resource_id="*",
                action="list",
                at=datetime.now(UTC) - timedelta(days=4000),
            )
        )
        s.commit()
    _refused(sessions, delete(PhiAuditLog))


def test_the_cron_deletes_what_is_older_than_the_retention(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    _seed(sessions, now)
    default = timedelta(days=CronSettings().access_denied_retention_days)
    assert default == timedelta(days=365)
    assert cron_tasks.cleanup_access_denied_log(sessions, now=now, retention=default) == 1
    assert _actors(sessions) == ["fresh", "old", "young"]
    assert cron_tasks.cleanup_access_denied_log(sessions, now=now, retention=default) == 0  # idempotent
    assert cron_tasks.cleanup_access_denied_log(sessions, now=now, retention=timedelta(days=90)) == 1
    assert _actors(sessions) == ["fresh", "young"]
    with pytest.raises(ValueError, match=">= 90 days"):
        cron_tasks.cleanup_access_denied_log(sessions, now=now, retention=timedelta(days=30))
    with pytest.raises(ValueError, match="greater than or equal to 90"):
        CronSettings(access_denied_retention_days=30)


def test_many_old_rows_go_in_batches(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    row = {"actor": "anonymous", "status": 401, "reason": "unauthorized", "method": "GET", "route": "/x"}
    with sessions() as s:
        s.execute(
            insert(AccessDeniedLog),
            [{**row, "at": now - timedelta(days=366, seconds=i)} for i in range(12_000)],
        )
        s.execute(insert(AccessDeniedLog), [{**row, "at": now - timedelta(days=2)}])
        s.commit()
    assert cron_tasks.cleanup_access_denied_log(sessions, now=now, retention=timedelta(days=365)) == 12_000
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(AccessDeniedLog)) == 1


def test_0008_downgrades_to_the_fully_append_only_table(db_url: str, sessions: sessionmaker[Session]) -> None:
    _seed(sessions, datetime.now(UTC))
    downgrade(db_url, "0007")
    _refused(sessions, delete(AccessDeniedLog).where(AccessDeniedLog.actor == "ancient"))
    upgrade(db_url)
    with sessions() as s:
        assert s.execute(delete(AccessDeniedLog).where(AccessDeniedLog.actor == "ancient")).rowcount == 1
        s.commit()


def test_head_matches_the_model(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, type_, parent: type_ != "table" or name == "access_denied_log"
            },
        )
        mine = MetaData()
        AccessDeniedLog.__table__.to_metadata(mine)
        assert compare_metadata(ctx, mine) == []
