"""The embedded runner of `booking run`: in-memory broker, SQLite, cron every interval, mail to a folder."""

import threading
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

from booking_core.db.migrate import upgrade
from booking_workers import broker as b
from booking_workers import embedded
from booking_workers.settings import CronSettings, WorkerSettings


def test_embedded_workers_and_cron_on_sqlite(tmp_path: Path, helpers: Any) -> None:
    url = f"sqlite:///{tmp_path}/booking.db"
    upgrade(url)
    ids = helpers.seed(url, phone=None, push_token=None, bookings=[timedelta(minutes=90)])
    mail = tmp_path / "mail"
    previous = b._broker
    b.setup_broker(broker=b.build_broker(None))
    stop = threading.Event()
    t = threading.Thread(
        target=embedded.start,
        args=(stop,),
        kwargs={
            "settings": WorkerSettings(database_url=url, mail_dir=str(mail)),
            "cron_settings": CronSettings(database_url=url),
            "cron_interval": 0.5,
        },
        daemon=True,
    )
    t.start()
    try:
        # The cron pass queues the 2 h reminder; the in-process worker writes it as an email file.
        helpers.wait_for(lambda: len(list(mail.glob("*.eml"))) == 1, timeout=30, what="the reminder email")
        b.enqueue_notification(patient_id="p-1", event_type="booking_confirmed", ref_id=ids["bookings"][0])
        helpers.wait_for(
            lambda: len(list(mail.glob("*.eml"))) == 2, timeout=30, what="the confirmation email"
        )
        subjects = sorted(message_from_bytes(p.read_bytes())["Subject"] for p in mail.glob("*.eml"))
        assert subjects == ["Reminder: your appointment is soon", "Your appointment is confirmed"]
    finally:
        stop.set()
        t.join(timeout=30)
        if previous is not None:
            b.setup_broker(broker=previous)
    assert not t.is_alive()
