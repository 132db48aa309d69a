"""`booking migrate`: Alembic with its configuration built in code, so it works from an installed wheel."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from booking_core.logs import configure_logging
from booking_core.settings import BookingSettings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_lock key of the migrations (any bigint; fixed so every process and version agrees on it).
MIGRATION_LOCK_KEY = 0x7061742D626B6731  # "pat-bkg1"


@contextmanager
def migration_lock(conn: Connection) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock for migrations on `conn` (other backends: nothing to hold).

    The lock is session-level, taken and released outside Alembic's transaction: a second migrator waits
    here, then reads the version table after the first has committed and finds nothing left to do. If
    this process dies, PostgreSQL releases the lock with its connection.
    """
    if conn.dialect.name != "postgresql":
        yield
        return
    log.info("waiting for the migration lock", extra={"component": "migrate"})
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    conn.commit()  # end the implicit transaction; the session-level lock stays
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()  # a failed migration leaves its transaction open; the unlock must not run in it
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` with the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not a main option: configparser would interpolate `%` in passwords.
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Apply every migration up to `revision` (all heads by default) to the database at `url`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Revert the database at `url` to `revision` ("base" for an empty schema)."""
    command.downgrade(alembic_config(url), revision)


def cli(args: argparse.Namespace) -> int:
    """Entry point of `booking migrate`: upgrade the configured database to the latest schema."""
    settings = BookingSettings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("applying migrations", extra={"component": "migrate"})
    upgrade(settings.database_url)
    log.info("migrations applied", extra={"component": "migrate", "outcome": "ok"})
    return 0
