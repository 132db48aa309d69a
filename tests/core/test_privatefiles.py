"""The embedded SQLite database and its folder are owner-only, whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from booking_core.db.session import make_engine
from booking_core.privatefiles import harden_tree


def test_sqlite_database_and_wal_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path}/data/booking.db")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "data").iterdir()}
        engine.dispose()
    finally:
        os.umask(old)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert modes["booking.db"] == 0o600 and modes.get("booking.db-wal", 0o600) == 0o600, modes


def test_harden_tree_tightens_an_old_install(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir(mode=0o755)
    (tmp_path / "mail" / "a.eml").write_text("x")
    (tmp_path / "mail" / "a.eml").chmod(0o644)
    harden_tree(tmp_path)
    assert (tmp_path / "mail").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "mail" / "a.eml").stat().st_mode & 0o777 == 0o600
