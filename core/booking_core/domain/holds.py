"""Holds: capacity reserved for a pending booking until it is confirmed or expires."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


class HoldStatus(StrEnum):
    """A hold is active until converted (booking confirmed), expired (cron) or released (cancelled)."""

    ACTIVE = "active"
    CONVERTED = "converted"
    EXPIRED = "expired"
    RELEASED = "released"


def hold_expires_at(now: datetime, ttl: timedelta, slot_starts_at: datetime) -> datetime:
    """When a hold taken `now` lapses: after `ttl`, and never after the slot starts."""
    return min(now + ttl, slot_starts_at)
