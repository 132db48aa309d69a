"""Settings come from BOOKING_* variables, per process type, with embedded defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from booking_api.settings import ApiSettings
from booking_core.settings import DEFAULT_DATABASE_URL, BookingSettings
from booking_workers.settings import CronSettings


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BOOKING_DATABASE_URL", "BOOKING_KAFKA_BOOTSTRAP_SERVERS", "BOOKING_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    s = BookingSettings()
    assert s.database_url == DEFAULT_DATABASE_URL
    assert s.embedded and s.redis_url is None


def test_environment_overrides_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKING_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("BOOKING_PORT", "8081")
    monkeypatch.setenv("BOOKING_OUTBOX_RETENTION_HOURS", "12")
    assert not ApiSettings().embedded
    assert ApiSettings().port == 8081
    assert CronSettings().outbox_retention_hours == 12


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKING_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        ApiSettings()
