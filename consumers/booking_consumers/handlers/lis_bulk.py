"""Multi-row writes for lis-testresult: COPY on PostgreSQL, executemany elsewhere (SQLite, `booking run`).

A poll batch writes a few thousand rows. Multi-row INSERT statements cost more in building and parsing
the SQL text than the server spends storing the rows; COPY streams them in the statement's own
transaction for a fraction of that.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ARRAY, String, Table, any_, bindparam, insert, text
from sqlalchemy import cast as cast_
from sqlalchemy.orm import Session

from booking_core.db.models import OutboxMessage
from booking_core.db.models_events import LisMessage
from booking_core.db.session import insert_ignore


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def any_of(session: Session, column: Any, values: Sequence[str]) -> Any:
    """`column IN values` as one array parameter on PostgreSQL (a long IN list costs planning time)."""
    if _postgres(session):
        return column == any_(cast_(bindparam(None, list(values), type_=ARRAY(String())), ARRAY(String())))
    return column.in_(list(values))


def copy_rows(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], json_columns: tuple[str, ...] = ()
) -> None:
    """Insert `rows` (dicts with the same keys) into `model`'s table."""
    if not rows:
        return
    table = _table(model)
    if not _postgres(session):
        session.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(row[c]) if c in json_columns and row[c] is not None else row[c] for c in columns]
            )


def insert_new_messages(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """`lis_messages` rows, skipping those already stored (unique MSH-4 + MSH-10); the ids inserted."""
    if not rows:
        return set()
    if _postgres(session):
        # One short statement with arrays, whatever the batch size: no SQL text to build per row.
        stmt = text(
            "INSERT INTO lis_messages"
            " (id, source_facility, control_id, patient_id, tier, results, received_at)"
            " SELECT * FROM unnest(CAST(:id AS varchar[]), CAST(:fac AS varchar[]), CAST(:cid AS varchar[]),"
            " CAST(:pid AS varchar[]), CAST(:tier AS varchar[]), CAST(:n AS int[]),"
            " CAST(:at AS timestamptz[])) ON CONFLICT DO NOTHING RETURNING id"
        )
        params = {
            "id": [r["id"] for r in rows],
            "fac": [r["source_facility"] for r in rows],
            "cid": [r["control_id"] for r in rows],
            "pid": [r["patient_id"] for r in rows],
            "tier": [r["tier"] for r in rows],
            "n": [r["results"] for r in rows],
            "at": [r["received_at"] for r in rows],
        }
        return set(session.execute(stmt, params).scalars())
    table = _table(LisMessage)
    stmt_sqlite = insert_ignore(session, table).values(list(rows)).returning(table.c.id)
    return set(session.execute(stmt_sqlite).scalars())


class OutboxRows:
    """Outbox rows (`booking_core.outbox.outbox_row`) staged by a batch, written with its other rows."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        """Stage one row."""
        self.rows.append(row)

    def write(self, session: Session) -> None:
        """Insert the staged rows in one COPY (one multi-row INSERT on SQLite)."""
        rows = [{**r, "attempts": 0} for r in self.rows]
        copy_rows(session, OutboxMessage, rows, json_columns=("payload", "headers"))
        self.rows = []


def new_ids(n: int) -> list[str]:
    """`n` random (version 4) UUIDs as text, from one read of the system's random source.

    The batch makes several per message (report, observations, message, event); one `uuid4()` each
    costs more than the rest of building the row.
    """
    raw = bytearray(os.urandom(16 * n))
    out = []
    for i in range(0, 16 * n, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
