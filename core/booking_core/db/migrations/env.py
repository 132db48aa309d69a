"""Alembic environment: the URL or an open connection comes from `booking_core.db.migrate`, never an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

# every model module, so autogenerate and the drift test see all tables (0001, 0002, 0003)
from booking_core.db import models, models_audit, models_events, models_notify  # noqa: F401
from booking_core.db.migrate import migration_lock
from booking_core.db.session import make_engine

config = context.config
target_metadata = models.Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER constraints in place; batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade --sql`)."""
    context.configure(
        url=config.attributes["url"],
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over the given connection or a new engine for the given URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.attributes["url"])
    try:
        # Pods starting together all run `booking migrate`: one migrates, the others wait, then find head.
        with engine.connect() as conn, migration_lock(conn):
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
