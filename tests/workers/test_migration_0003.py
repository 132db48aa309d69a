from pathlib import Path

from sqlalchemy import inspect

from booking_core.db.migrate import downgrade, upgrade
from booking_core.db.session import make_engine


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def check_roundtrip(url: str) -> None:
    upgrade(url)
    assert {"notification_deliveries", "notification_attempts"} <= _tables(url)
    downgrade(url, "0002")
    assert not {"notification_deliveries", "notification_attempts"} & _tables(url)
    upgrade(url)
    assert {"notification_deliveries", "notification_attempts"} <= _tables(url)


def test_0003_up_down_up_on_sqlite(tmp_path: Path) -> None:
    check_roundtrip(f"sqlite:///{tmp_path}/m.db")


def test_0003_up_down_up_on_postgresql(postgres_url: str) -> None:
    check_roundtrip(postgres_url)
