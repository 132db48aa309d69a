"""The notifications worker's database pool holds every thread's connection at once (PostgreSQL)."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from booking_core.db.migrate import upgrade
from booking_core.domain.notifications import Channel
from booking_workers.actors import build_notifier
from booking_workers.notifications.service import send_notification
from booking_workers.settings import WorkerSettings

THREADS = 16  # over the shared engine's 15 (5 + 10 overflow)


@pytest.mark.parametrize("threads", [4, THREADS])
def test_every_worker_thread_has_a_job_in_flight_at_once(
    postgres_url: str, smtp_sink: Any, helpers: Any, threads: int
) -> None:
    # Each thread keeps its connection from job to job and, while a job is in flight, may check out a
    # second (the outbox row's completion, a claim held elsewhere). With the shared engine's pool the
    # 16th thread waited the pool's 10 s timeout and failed its job: 25 emails/s instead of ~1,000.
    upgrade(postgres_url)
    ids = helpers.seed(
        postgres_url,
        time_zone="UTC",
        bookings=[timedelta(days=3 + i) for i in range(threads)],
        prefs={"sms": False, "push": False, "in_app": False},
    )
    settings = WorkerSettings(
        database_url=postgres_url,
        worker_threads=threads,
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        provider_timeout_seconds=5,
    )
    n = build_notifier(settings)
    all_in_flight = threading.Barrier(threads, timeout=30)
    email = n.senders[Channel.EMAIL]

    class Gate:
        """The SMTP sender, held until every thread's job is in flight with its second checkout open."""

        def send(self, **kwargs: Any) -> None:
            with n.session_factory() as s:
                s.execute(text("SELECT 1"))
                all_in_flight.wait()
            email.send(**kwargs)

    n.senders[Channel.EMAIL] = Gate()
    errors: list[BaseException] = []

    def job(ref: str) -> None:
        try:
            send_notification(n, patient_id="p-1", event_type="booking_confirmed", ref_id=ref)
        except BaseException as exc:  # reported below
            errors.append(exc)
            all_in_flight.abort()

    workers = [threading.Thread(target=job, args=(ref,)) for ref in ids["bookings"]]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    assert len(smtp_sink.wait_for(threads)) == threads
    n.session_factory.kw["bind"].dispose()
