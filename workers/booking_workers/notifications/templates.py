"""Message templates per event and channel (pure).

Minimum necessary by construction: SMS and push are rendered from `ShortContext`, which has no field
for a result, a value, a test name or a clinic, so a template cannot leak one into a text message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from booking_core.domain.notifications import Channel, NotificationKind

# The event kinds and channels are the domain's (the API serves the same names).
EventType = NotificationKind


@dataclass(frozen=True)
class Rendered:
    """A rendered message: a subject (email) or title (push, inbox) and a body."""

    subject: str
    body: str


@dataclass(frozen=True)
class ShortContext:
    """What an SMS or a push may say: when (in the patient's zone) and where to sign in."""

    appointment_local: datetime | None
    portal_url: str


@dataclass(frozen=True)
class EmailContext:
    """What an email or the in-app inbox may say; still never a result value or diagnosis."""

    appointment_local: datetime | None
    clinic_name: str | None
    booking_ref: str | None
    portal_url: str

    def short(self) -> ShortContext:
        """The subset a text message may carry."""
        return ShortContext(appointment_local=self.appointment_local, portal_url=self.portal_url)


def _when(dt: datetime | None) -> str:
    return dt.strftime("%a %d %b %Y at %H:%M") if dt is not None else "your appointment time"


_SUBJECTS: dict[EventType, str] = {
    EventType.BOOKING_CONFIRMED: "Your appointment is confirmed",
    EventType.BOOKING_RESCHEDULED: "Your appointment has been rescheduled",
    EventType.BOOKING_CANCELLED: "Your appointment has been cancelled",
    EventType.REMINDER_24H: "Reminder of your upcoming appointment",
    EventType.REMINDER_2H: "Reminder: your appointment is soon",
    EventType.RESULTS_AVAILABLE: "New results are ready in your patient portal",
}


# Each event's lines, built once at import: a job formats only its own (the render built all six with
# f-strings per call). Results are never put in a message: the patient reads them after signing in.
_EMAIL_LINES: dict[EventType, str] = {
    EventType.BOOKING_CONFIRMED: "Your appointment{where} on {when} is confirmed.{ref}",
    EventType.BOOKING_RESCHEDULED: "Your appointment{where} has moved to {when}.{ref}",
    EventType.BOOKING_CANCELLED: "Your appointment{where} on {when} has been cancelled.{ref}",
    EventType.REMINDER_24H: "This is a reminder of your appointment{where} on {when}.{ref}",
    EventType.REMINDER_2H: "Your appointment{where} starts on {when}.{ref}",
    EventType.RESULTS_AVAILABLE: "New test results are ready. Sign in to the portal to view them.",
}
_SHORT_TEXTS: dict[EventType, str] = {
    EventType.BOOKING_CONFIRMED: "Your appointment on {when} is confirmed.",
    EventType.BOOKING_RESCHEDULED: "Your appointment has moved to {when}.",
    EventType.BOOKING_CANCELLED: "Your appointment on {when} has been cancelled.",
    EventType.REMINDER_24H: "Reminder: your appointment is on {when}.",
    EventType.REMINDER_2H: "Reminder: your appointment starts {when}.",
    EventType.RESULTS_AVAILABLE: "Your results are ready: sign in to the portal.",
}


def render_email(event: EventType, ctx: EmailContext) -> Rendered:
    """Subject and plain-text body of an email (also used for the in-app inbox)."""
    # Values go in through format()'s arguments, never into the template: braces in a clinic's name
    # stay text.
    line = _EMAIL_LINES[event].format(
        where=f" at {ctx.clinic_name}" if ctx.clinic_name else "",
        when=_when(ctx.appointment_local),
        ref=f"\nBooking reference: {ctx.booking_ref}" if ctx.booking_ref else "",
    )
    body = f"Hello,\n\n{line}\n\nManage your appointments: {ctx.portal_url}\n"
    return Rendered(subject=_SUBJECTS[event], body=body)


def render_short(event: EventType, ctx: ShortContext) -> Rendered:
    """Title and body of an SMS or push: time and portal link only."""
    text = _SHORT_TEXTS[event].format(when=_when(ctx.appointment_local))
    return Rendered(subject=_SUBJECTS[event], body=f"{text} {ctx.portal_url}")


def render(event: EventType, channel: Channel, ctx: EmailContext) -> Rendered:
    """The message for one channel; SMS and push only ever see the short context."""
    if channel in (Channel.SMS, Channel.PUSH):
        return render_short(event, ctx.short())
    return render_email(event, ctx)
