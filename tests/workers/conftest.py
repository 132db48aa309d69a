"""Stand-ins for the outside world the notification worker talks to, and database seeding helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from booking_testing.procs import free_port
from booking_testing.wait import wait_for


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd); `replies` scripts answers to DATA (default 250), `gate` blocks one."""

    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)  # scripted answers to RCPT (default 250)
    extensions: tuple[str, ...] = ()  # offered beyond aiosmtpd's own: PIPELINING, CHUNKING
    chunks: int = 0  # mails that came in a BDAT chunk, not after DATA
    gate: threading.Event | None = None  # when set up, the next DATA waits for it, then answers 451
    data_started: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Message]:
        """The emails received once there are at least `n`."""

        def enough() -> list[Message] | None:
            with self.lock:
                return list(self.messages) if len(self.messages) >= n else None

        return wait_for(enough, timeout=timeout, what=f"{n} emails", interval=0.05)


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        sink = self.sink
        if sink.gate is not None:
            gate, sink.gate = sink.gate, None
            sink.data_started.set()
            # Not accepted: the client dies while waiting for our answer, so the mail was never delivered.
            while not gate.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 try again later"
        with sink.lock:
            if sink.replies:
                reply = sink.replies.pop(0)
                if not reply.startswith("250"):
                    return reply
            sink.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.sink.lock:
            reply = self.sink.rcpt_replies.pop(0) if self.sink.rcpt_replies else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], *(f"250-{e}" for e in self.sink.extensions), responses[-1]]


class _ChunkingSmtp(SMTP):
    """aiosmtpd with BDAT (RFC 3030), which it lacks, for one chunk: what a client sends us."""

    async def smtp_BDAT(self, arg: str) -> None:
        size, _, last = arg.partition(" ")
        data = await self._reader.readexactly(int(size))  # read even when refused: the stream stays whole
        assert self.envelope is not None
        if last.strip().upper() != "LAST":
            await self.push("504 5.5.4 one chunk only here")
        elif not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 need RCPT command")
        else:
            self.envelope.content = self.envelope.original_content = data
            self.event_handler.sink.chunks += 1
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _ChunkingSmtp(self.handler, **self.SMTP_kwargs)


# A server as aiosmtpd offers it (each command answered before the next), with PIPELINING, and with
# PIPELINING and CHUNKING (Postfix's): the client sends a mail in four, two or one round trips.
SMTP_KINDS = {"plain": (), "pipelining": ("PIPELINING",), "chunking": ("PIPELINING", "CHUNKING")}


@pytest.fixture
def smtp_sink(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    """A real local SMTP server collecting what it accepts (parametrize indirectly with a SMTP_KINDS key)."""
    kind = getattr(request, "param", "plain")
    sink = SmtpSink(host="127.0.0.1", port=free_port(), extensions=SMTP_KINDS[kind])
    controller = _Controller(_SmtpHandler(sink), hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    if sink.gate is not None:
        sink.gate.set()
    controller.stop()


@dataclass
class ProviderStandIn:
    """A local HTTP server standing in for an SMS or push provider; `statuses` scripts its answers."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status per request, recorded either way
    statuses: list[int] = field(default_factory=list)  # scripted answers, then 200
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r, s in zip(self.requests, self.answers, strict=True) if s == 200]


def _start_provider() -> tuple[ProviderStandIn, ThreadingHTTPServer]:
    port = free_port()
    stand_in = ProviderStandIn(url=f"http://127.0.0.1:{port}/send")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body["_idempotency_key"] = self.headers.get("Idempotency-Key")
            if stand_in.delay:
                time.sleep(stand_in.delay)
            with stand_in.lock:
                status = stand_in.statuses.pop(0) if stand_in.statuses else 200
                stand_in.requests.append(body)
                stand_in.answers.append(status)
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}' if status == 200 else b'{"error": "nope"}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stand_in, server


@pytest.fixture
def sms_provider() -> Iterator[ProviderStandIn]:
    """A local HTTP SMS provider stand-in."""
    stand_in, server = _start_provider()
    yield stand_in
    server.shutdown()


@pytest.fixture
def push_provider() -> Iterator[ProviderStandIn]:
    """A local HTTP push provider stand-in."""
    stand_in, server = _start_provider()
    yield stand_in
    server.shutdown()


def utcnow() -> datetime:
    return datetime.now(UTC)


def seed(
    url: str,
    *,
    patient_id: str = "p-1",
    tier: str = "standard",
    time_zone: str = "Europe/Amsterdam",
    email: str | None = "ann@example.org",
    phone: str | None = "+31600000001",
    push_token: str | None = "device-token-1",
    bookings: list[timedelta] | None = None,
    prefs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A migrated database with one patient, a clinic, a service and `bookings` (offsets from now)."""
    from booking_core.db import models as m
    from booking_core.db.session import make_engine, make_session_factory

    engine = make_engine(url)
    ids: dict[str, Any] = {"patient_id": patient_id, "bookings": []}
    with make_session_factory(engine)() as s:
        if s.get(m.Patient, patient_id) is None:
            s.add(
                m.Patient(
                    id=patient_id,
                    tier=tier,
                    time_zone=time_zone,
                    email=email,
                    phone=phone,
                    push_token=push_token,
                    given_name="Ann",
                )
            )
            s.flush()
        if prefs is not None:
            s.merge(m.NotificationPreference(patient_id=patient_id, **prefs))
        clinic = s.query(m.Clinic).filter_by(code="C1").one_or_none() or m.Clinic(
            code="C1", name="Central Clinic"
        )
        service = s.query(m.Service).filter_by(code="S1").one_or_none() or m.Service(
            code="S1", name="Blood draw"
        )
        s.add_all([clinic, service])
        s.flush()
        now = utcnow()
        for offset in bookings or []:
            starts = now + offset
            slot = m.Slot(
                clinic_id=clinic.id,
                service_id=service.id,
                starts_at=starts,
                ends_at=starts + timedelta(minutes=15),
                capacity=1,
                booked=1,
            )
            s.add(slot)
            s.flush()
            b = m.Booking(
                patient_id=patient_id,
                slot_id=slot.id,
                clinic_id=clinic.id,
                service_id=service.id,
                status="booked",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=15),
            )
            s.add(b)
            s.flush()
            ids["bookings"].append(b.id)
        s.commit()
    engine.dispose()
    return ids


def all_channels_notifier(sessions: Any, smtp_sink: Any, sms_provider: Any, push_provider: Any) -> Any:
    """A Notifier on every channel: the SMTP sink and the SMS/push stand-ins, quick retries."""
    from booking_core.domain.notifications import Channel
    from booking_workers.notifications.email import SmtpEmail
    from booking_workers.notifications.http_providers import PushProvider, SmsProvider
    from booking_workers.notifications.policy import RetryPolicy
    from booking_workers.notifications.service import Notifier

    return Notifier(
        session_factory=sessions,
        senders={
            Channel.EMAIL: SmtpEmail(
                host=smtp_sink.host, port=smtp_sink.port, sender="no-reply@x.org", timeout=5
            ),
            Channel.SMS: SmsProvider(url=sms_provider.url, timeout=2),
            Channel.PUSH: PushProvider(url=push_provider.url, timeout=2),
        },
        policy=RetryPolicy(max_attempts=3, min_backoff_ms=10, max_backoff_ms=50),
        lease=timedelta(seconds=30),
    )


@pytest.fixture
def helpers() -> Any:
    """seed(), wait_for(), utcnow() and all_channels_notifier() for the tests (importlib mode cannot
    import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        seed=seed, wait_for=wait_for, utcnow=utcnow, all_channels_notifier=all_channels_notifier
    )
