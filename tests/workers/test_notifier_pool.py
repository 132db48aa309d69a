"""The notifications worker's database pool holds every thread's connection at once (PostgreSQL)."""

import contextlib
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
    _jobs_at_once(n, ids["bookings"], all_in_flight)
    assert len(smtp_sink.wait_for(threads)) == threads
    n.session_factory.kw["bind"].dispose()


def test_warm_readies_a_connection_for_every_thread(postgres_url: str, smtp_sink: Any, helpers: Any) -> None:
    # Each worker thread keeps a connection of its own. Warming one left the other threads to connect and
    # prepare the job's statements inside the first burst after a start: with the warm-up for every
    # thread, each thread's first job runs on a connection the warm-up opened, statements prepared.
    threads = 4
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
    n.warm(threads)
    engine = n.session_factory.kw["bind"]
    with contextlib.ExitStack() as stack:  # every warmed connection at once: none is opened here
        held = [stack.enter_context(n.reads()) for _ in range(threads)]
        prepared = [
            {r[0] for r in c.exec_driver_sql("SELECT statement FROM pg_prepared_statements").all()}
            for c in held
        ]
        warmed = {c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in held}
    assert len(warmed) == threads
    for statements in prepared:  # the load (both forms), the claim, its take-over and the record
        starts = sorted(s.split(None, 1)[0] for s in statements)
        assert starts == ["INSERT", "SELECT", "SELECT", "UPDATE", "WITH"], statements

    all_in_flight = threading.Barrier(threads, timeout=30)
    email = n.senders[Channel.EMAIL]
    used: set[int] = set()

    class Gate:
        """The SMTP sender, held until every thread's job is in flight: each on its own connection."""

        def send(self, **kwargs: Any) -> None:
            conn = n._held.conn  # this job's connection (the thread's own)
            used.add(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            all_in_flight.wait()
            email.send(**kwargs)

    n.senders[Channel.EMAIL] = Gate()
    _jobs_at_once(n, ids["bookings"], all_in_flight)
    assert len(smtp_sink.wait_for(threads)) == threads
    assert len(used) == threads and used <= warmed, (used, warmed)
    engine.dispose()


def _jobs_at_once(n: Any, refs: list[str], all_in_flight: threading.Barrier) -> None:
    """One booking-confirmed notification per ref, each on a thread of its own, all started together;
    fails with what any job raised (its failure releases the others from the barrier)."""
    errors: list[BaseException] = []

    def job(ref: str) -> None:
        try:
            send_notification(n, patient_id="p-1", event_type="booking_confirmed", ref_id=ref)
        except BaseException as exc:  # reported below
            errors.append(exc)
            all_in_flight.abort()

    workers = [threading.Thread(target=job, args=(ref,)) for ref in refs]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
