"""What a crash between a provider's acceptance and our record costs: one resend, recognisably the same.

No provider protocol lets us make the acceptance and our record one step: SMTP answers 250 to DATA and
has no idempotency key, an HTTP provider answers 200. A worker killed in between leaves its claim
`sending`; when the lease lapses the notice is sent again. What we guarantee is that the resend is the
same message: email carries the same Message-ID (one per notice and channel, so mail stores that drop
duplicate Message-IDs show it once), SMS and push the same Idempotency-Key (so providers that honour it
drop it), and the in-app inbox, written in our database, stays exactly once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from booking_core.db import models as m
from booking_core.db.migrate import upgrade
from booking_core.db.models_notify import NotificationDelivery
from booking_core.db.session import make_engine, make_session_factory
from booking_workers.notifications.service import send_notification


def test_a_send_lost_to_a_crash_is_resent_as_the_same_message_on_every_channel(
    postgres_url: str, smtp_sink: Any, sms_provider: Any, push_provider: Any, helpers: Any
) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    notifier = helpers.all_channels_notifier(sessions, smtp_sink, sms_provider, push_provider)
    try:
        booking = helpers.seed(postgres_url, bookings=[timedelta(days=3)])["bookings"][0]
        kw = {"patient_id": "p-1", "event_type": "booking_confirmed", "ref_id": booking, "cause": "ev-1"}
        assert send_notification(notifier, **kw).retry_in_ms is None
        smtp_sink.wait_for(1)
        # The worker died after every provider accepted and before any outcome was recorded: each claim
        # is still `sending`, and its lease has lapsed.
        with sessions() as s:
            s.execute(
                update(NotificationDelivery).values(
                    status="sending", sent_at=None, claimed_until=helpers.utcnow() - timedelta(seconds=1)
                )
            )
            s.commit()
        assert send_notification(notifier, **kw).retry_in_ms is None
        first, again = smtp_sink.wait_for(2)
        assert first["Message-ID"] and again["Message-ID"] == first["Message-ID"]
        for provider in (sms_provider, push_provider):
            accepted = provider.accepted()
            assert len(accepted) == 2
            assert (
                accepted[0]["_idempotency_key"]
                and accepted[1]["_idempotency_key"] == accepted[0]["_idempotency_key"]
            )
        with sessions() as s:
            assert len(s.scalars(select(m.Notification)).all()) == 1  # in-app: exactly once
            assert {d.status for d in s.scalars(select(NotificationDelivery))} == {"sent"}
        # Done now: a third delivery of the job sends nothing anywhere.
        assert send_notification(notifier, **kw).retry_in_ms is None
        assert len(smtp_sink.messages) == 2 and len(sms_provider.accepted()) == 2
    finally:
        engine.dispose()
