"""Notification preferences and kinds (data only; delivery rules live with the workers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from enum import StrEnum

from booking_core.domain.errors import InvalidValueError


class Channel(StrEnum):
    """Delivery channels."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"


class NotificationKind(StrEnum):
    """What a notification is about."""

    BOOKING_CONFIRMED = "booking_confirmed"
    BOOKING_RESCHEDULED = "booking_rescheduled"
    BOOKING_CANCELLED = "booking_cancelled"
    REMINDER_24H = "reminder_24h"
    REMINDER_2H = "reminder_2h"
    RESULTS_AVAILABLE = "results_available"


@dataclass(frozen=True)
class Preferences:
    """A patient's channels and quiet hours (local time); a window may wrap past midnight."""

    email: bool = True
    sms: bool = True
    push: bool = True
    in_app: bool = True
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    urgent_override: bool = True

    def __post_init__(self) -> None:
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            raise InvalidValueError("quiet_hours_end", "quiet hours need both a start and an end")
        if self.quiet_hours_start is not None and self.quiet_hours_start == self.quiet_hours_end:
            raise InvalidValueError("quiet_hours_end", "quiet hours must not start and end at the same time")

    @property
    def channels(self) -> frozenset[Channel]:
        """The enabled channels."""
        on = {
            Channel.EMAIL: self.email,
            Channel.SMS: self.sms,
            Channel.PUSH: self.push,
            Channel.IN_APP: self.in_app,
        }
        return frozenset(c for c, enabled in on.items() if enabled)
