from datetime import UTC, datetime

import pytest

from booking_core.domain.notifications import Channel, NotificationKind
from booking_workers.notifications.templates import EmailContext, render

CTX = EmailContext(
    appointment_local=datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
    clinic_name="Oncology Centre",
    booking_ref="AB12CD34",
    portal_url="https://portal.example.org",
)


@pytest.mark.parametrize("event", list(NotificationKind))
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.PUSH])
def test_text_messages_carry_no_clinic_no_reference(event: NotificationKind, channel: Channel) -> None:
    r = render(event, channel, CTX)
    assert "Oncology" not in r.body and "AB12CD34" not in r.body
    assert "Oncology" not in r.subject
    assert "https://portal.example.org" in r.body


@pytest.mark.parametrize("channel", list(Channel))
def test_results_available_is_only_a_pointer_to_the_portal(channel: Channel) -> None:
    r = render(NotificationKind.RESULTS_AVAILABLE, channel, CTX)
    assert "sign in" in r.body.lower()
    if channel in (Channel.SMS, Channel.PUSH):
        assert r.body.startswith("Your results are ready: sign in to the portal.")


def test_email_has_the_details() -> None:
    r = render(NotificationKind.BOOKING_CONFIRMED, Channel.EMAIL, CTX)
    assert "Oncology Centre" in r.body and "Mon 04 May 2026 at 09:30" in r.body and "AB12CD34" in r.body
    assert r.subject == "Your appointment is confirmed"


def test_every_event_renders_on_every_channel() -> None:
    empty = EmailContext(appointment_local=None, clinic_name=None, booking_ref=None, portal_url="u")
    for event in NotificationKind:
        for channel in Channel:
            assert render(event, channel, empty).body
