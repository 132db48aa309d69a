"""`kill -9` of `booking run` under load, then a restart: every confirmation and cancellation is delivered
exactly once on every enabled channel (the in-app inbox, and email to a real SMTP server).

Before the notification outbox, about two thirds of the notices queued before the kill were lost: the
jobs lived only in the in-memory broker while the consumer offsets were already stored.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

from booking_core.db import models as m
from booking_core.db.models_notify import NotificationIntent
from booking_core.db.session import make_engine, make_session_factory
from booking_testing.procs import free_port

BOOKING = [sys.executable, "-m", "booking_core.cli"]
BOOKINGS = 60


def _env(smtp: Any, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
    return {
        **env,
        "BOOKING_SMTP_HOST": smtp.host,
        "BOOKING_SMTP_PORT": str(smtp.port),
        # A worker killed mid-send leaves its claim; the restart takes it over once this lease lapses.
        "BOOKING_NOTIFICATION_LEASE_SECONDS": "3",
        "BOOKING_LOG_LEVEL": "WARNING",
    }


class Run:
    """One `booking run` process in `cwd`."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*BOOKING, "run", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 120
        self.token = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the banner comes after migrations and the demo seed
            if line.startswith("export TOKEN="):
                self.token = line.strip().split("=", 1)[1]
                break
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "booking run did not come up"
            time.sleep(0.2)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # never block on a full pipe

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _load(run: Run, slot_ids: list[str], stop: threading.Event) -> None:
    """Book each slot; cancel every third booking right after it is made."""
    auth = {"Authorization": f"Bearer {run.token}"}
    with httpx.Client(base_url=run.base, timeout=10, headers=auth) as client:
        for i, slot_id in enumerate(slot_ids):
            if stop.is_set():
                return
            try:
                r = client.post(
                    "/api/v1/bookings", json={"slot_id": slot_id}, headers={"Idempotency-Key": f"k-{i}"}
                )
                if r.status_code == 201 and i % 3 == 2:
                    client.post(f"/api/v1/bookings/{r.json()['id']}/cancel")
            except httpx.HTTPError:
                return  # the server was killed


def _expected(sessions: Any) -> Counter[tuple[str, str]]:
    """(kind, booking ref) -> 1 for every confirmation and cancellation the bookings' history owes."""
    want: Counter[tuple[str, str]] = Counter()
    with sessions() as s:
        for booking_id, to_status in s.execute(
            select(m.BookingStatusHistory.booking_id, m.BookingStatusHistory.to_status)
        ):
            if to_status == "booked":
                want[("booking_confirmed", booking_id)] = 1
            elif to_status == "cancelled":
                want[("booking_cancelled", booking_id)] = 1
    return want


def test_kill_9_under_load_then_restart_delivers_every_notice_exactly_once(
    tmp_path: Path, smtp_sink: Any
) -> None:
    port = free_port()
    env = _env(smtp_sink, port)
    run = Run(tmp_path, env, port)
    engine = make_engine(f"sqlite:///{tmp_path}/.booking/booking.db")
    sessions = make_session_factory(engine)
    try:
        with sessions() as s:
            # Whatever the hour the test runs at, nothing may be held for quiet hours.
            s.execute(update(m.NotificationPreference).values(quiet_hours_start=None, quiet_hours_end=None))
            s.commit()
        slots = httpx.get(f"{run.base}/api/v1/slots", params={"service": "blood-draw", "limit": 100}).json()[
            "items"
        ]
        assert len(slots) >= BOOKINGS
        stop = threading.Event()
        loader = threading.Thread(target=_load, args=(run, [x["id"] for x in slots[:BOOKINGS]], stop))
        loader.start()

        def made() -> int:
            with sessions() as s:
                return int(s.scalar(select(func.count()).select_from(m.Booking)) or 0)

        deadline = time.monotonic() + 120
        while made() < BOOKINGS // 2:
            assert time.monotonic() < deadline, "the load did not get going"
            time.sleep(0.05)
        run.stop(signal.SIGKILL)  # mid-load: bookings pending, notices queued, sends in flight
        stop.set()
        loader.join(30)
        with sessions() as s:
            owed_at_kill = s.scalar(
                select(func.count())
                .select_from(NotificationIntent)
                .where(NotificationIntent.completed_at.is_(None))
            )
        run = Run(tmp_path, env, port)

        def settled() -> bool:
            with sessions() as s:
                pending = s.scalar(
                    select(func.count()).select_from(m.Booking).where(m.Booking.status == "pending")
                )
                open_ = s.scalar(
                    select(func.count())
                    .select_from(NotificationIntent)
                    .where(NotificationIntent.completed_at.is_(None))
                )
            return pending == 0 and open_ == 0

        deadline = time.monotonic() + 180
        while not settled():
            assert time.monotonic() < deadline, "notices still owed three minutes after the restart"
            time.sleep(0.5)
        want = _expected(sessions)
        assert sum(want.values()) >= BOOKINGS // 2
        with sessions() as s:
            inbox = Counter(
                (kind, next(b for _, b in want if b in key))
                for kind, key in s.execute(select(m.Notification.kind, m.Notification.dedupe_key))
                if kind in ("booking_confirmed", "booking_cancelled")
            )
        assert inbox == want, (
            f"in-app: {sum(inbox.values())} of {sum(want.values())} (owed at kill: {owed_at_kill})"
        )
        refs = {b[:8].upper(): b for _, b in want}
        subjects = {
            "Your appointment is confirmed": "booking_confirmed",
            "Your appointment has been cancelled": "booking_cancelled",
        }
        time.sleep(1)  # let the SMTP server finish any message it is still receiving
        emails: Counter[tuple[str, str]] = Counter()
        ids: dict[tuple[str, str], set[str]] = {}
        for msg in smtp_sink.messages:
            if msg["Subject"] not in subjects:
                continue  # reminders of the bookings within 24 h
            ref = re.search(r"Booking reference: (\w+)", msg.get_payload(decode=True).decode())
            assert ref is not None
            notice = (subjects[msg["Subject"]], refs[ref.group(1)])
            emails[notice] += 1
            ids.setdefault(notice, set()).add(msg["Message-ID"])
        # Every notice reached the mailbox as one message (one Message-ID). SMTP has no idempotency: a send
        # the server accepted just before the kill, not yet recorded, is sent again after the restart
        # with the same Message-ID (mail stores drop it); at most the sends in flight at the kill.
        assert {k: len(v) for k, v in ids.items()} == dict(want), "a notice missing, or two different emails"
        resent = sum(emails.values()) - sum(want.values())
        assert resent <= 2, f"email: {sum(emails.values())} sends for {sum(want.values())} notices"
    finally:
        run.stop()
        engine.dispose()
