"""Two pods starting together both run `booking migrate`: the advisory lock serializes them on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from booking_core.db.migrate import MIGRATION_LOCK_KEY, alembic_config
from booking_core.db.session import make_engine

_THIS_DB = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
WAITING = text(f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND {_THIS_DB}")
ANY = text(f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND {_THIS_DB}")


def _migrate(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BOOKING_DATABASE_URL": url, "BOOKING_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "booking_core.cli", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_two_concurrent_migrates_both_succeed_at_head(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as holder:
            # Hold the lock so both migrators are surely running at once, then let them race.
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            holder.commit()
            procs = [_migrate(postgres_url), _migrate(postgres_url)]
            try:
                deadline = time.monotonic() + 60
                while holder.execute(WAITING).scalar_one() < 2:
                    assert all(p.poll() is None for p in procs), "a migrator exited without waiting"
                    assert time.monotonic() < deadline, "the migrators never waited for the lock"
                    time.sleep(0.1)
                holder.rollback()
                # Nothing was migrated while the lock was held.
                assert holder.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None
                holder.rollback()
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                holder.commit()
            outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        heads = set(ScriptDirectory.from_config(alembic_config(postgres_url)).get_heads())
        with engine.connect() as conn:
            assert set(MigrationContext.configure(conn).get_current_heads()) == heads
            # The lock is released: nobody holds or waits for it any more.
            assert conn.execute(ANY).scalar_one() == 0
    finally:
        engine.dispose()
