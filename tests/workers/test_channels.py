"""Channel adapters against a real SMTP server and a local HTTP provider stand-in (no database)."""

import io
import socket
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from typing import Any

import pytest

from booking_workers.notifications.email import PickupDirEmail, SmtpEmail, build_message, message_bytes
from booking_workers.notifications.errors import PermanentDeliveryError, TransientDeliveryError
from booking_workers.notifications.http_providers import PushProvider, SmsProvider
from booking_workers.notifications.templates import Rendered

MSG = Rendered(subject="Your appointment is confirmed", body="Hello")


def smtp(sink: Any) -> SmtpEmail:
    return SmtpEmail(host=sink.host, port=sink.port, sender="no-reply@pat-booking.local", timeout=5)


KINDS = pytest.mark.parametrize("smtp_sink", ["plain", "pipelining", "chunking"], indirect=True)


@KINDS
def test_email_arrives_at_the_smtp_server(smtp_sink: Any) -> None:
    smtp(smtp_sink).send(to="ann@example.org", rendered=MSG, notification_id="n-1")
    [mail] = smtp_sink.wait_for(1)
    assert mail["To"] == "ann@example.org"
    assert mail["Subject"] == "Your appointment is confirmed"
    assert mail["X-Notification-Id"] == "n-1"
    # A server offering CHUNKING gets the mail with its commands in one write (BDAT), others after DATA.
    assert smtp_sink.chunks == (1 if "CHUNKING" in smtp_sink.extensions else 0)


@pytest.mark.parametrize(
    ("subject", "body", "written_directly"),
    [
        ("Your appointment is confirmed", "Hello,\n\nAt Clinic A on Mon.\n", True),
        ("Subject", "no final newline", True),
        ("Subject", "Hello at Phòng khám Hà Nội\n", False),  # non-ASCII body: base64
        ("Subject", "x" * 100 + "\n", False),  # a long line: encoded, not 7bit
        ("Résultats", "Hello\n", False),  # non-ASCII subject: RFC 2047
        ("Bcc: x@y.org\r\nX: y", "Hello\n", False),  # a line break: EmailMessage refuses it
    ],
)
def test_the_fast_email_is_byte_for_byte_what_email_message_sends(
    subject: str, body: str, written_directly: bool
) -> None:
    rendered = Rendered(subject=subject, body=body)
    fast = message_bytes(
        sender="no-reply@x.org", to="ann@example.org", rendered=rendered, notification_id="n-1"
    )
    if not written_directly:
        assert fast is None  # encoding, folding and refusing stay EmailMessage's
        return
    msg = build_message(
        sender="no-reply@x.org", to="ann@example.org", rendered=rendered, notification_id="n-1"
    )
    wire = io.BytesIO()  # what smtplib.send_message writes for an ASCII message
    BytesGenerator(wire, policy=msg.policy).flatten(msg, linesep="\r\n")
    assert fast == wire.getvalue()


@KINDS
def test_mails_over_one_connection_arrive_whole_and_in_order(smtp_sink: Any) -> None:
    # One connection per thread carries many mails: with pipelined commands, each reply must be read
    # as the answer to its own command, or the next mail would take the previous one's answers.
    sender = smtp(smtp_sink)
    bodies = ["Hello\n", ".a line starting with a dot\n..and two\n", "no final newline"]
    for i, body in enumerate(bodies):
        sender.send(to=f"p{i}@example.org", rendered=Rendered("Notice", body), notification_id=f"n-{i}")
    mails = smtp_sink.wait_for(3)
    assert [m["X-Notification-Id"] for m in mails] == ["n-0", "n-1", "n-2"]
    assert [m["To"] for m in mails] == ["p0@example.org", "p1@example.org", "p2@example.org"]
    assert [m.get_payload() for m in mails] == [
        "Hello\r\n",
        ".a line starting with a dot\r\n..and two\r\n",
        "no final newline\r\n",
    ]


@KINDS
def test_a_mail_with_non_ascii_arrives_intact(smtp_sink: Any) -> None:
    rendered = Rendered(subject="Kết quả xét nghiệm", body="Phòng khám Hà Nội\n")
    smtp(smtp_sink).send(to="ann@example.org", rendered=rendered, notification_id="n-2")
    [mail] = smtp_sink.wait_for(1)
    assert str(make_header(decode_header(mail["Subject"]))) == "Kết quả xét nghiệm"
    assert mail.get_payload(decode=True).decode().rstrip() == "Phòng khám Hà Nội"


@KINDS
def test_smtp_4xx_is_transient_and_5xx_permanent(smtp_sink: Any) -> None:
    smtp_sink.replies = ["451 4.3.0 busy", "554 5.7.1 rejected"]
    with pytest.raises(TransientDeliveryError) as t:
        smtp(smtp_sink).send(to="ann@example.org", rendered=MSG, notification_id="n-1")
    assert t.value.error_class == "smtp_4xx"
    with pytest.raises(PermanentDeliveryError) as p:
        smtp(smtp_sink).send(to="ann@example.org", rendered=MSG, notification_id="n-1")
    assert p.value.error_class == "smtp_5xx"
    # The error never carries the address (it ends up in records and logs).
    assert "example.org" not in str(t.value) + str(p.value)


@KINDS
def test_a_refused_recipient_is_transient_on_4xx_and_permanent_on_5xx_and_nothing_is_sent(
    smtp_sink: Any,
) -> None:
    smtp_sink.rcpt_replies = ["450 4.2.1 mailbox busy", "550 5.1.1 no such user"]
    sender = smtp(smtp_sink)
    with pytest.raises(TransientDeliveryError) as t:
        sender.send(to="ann@example.org", rendered=MSG, notification_id="n-1")
    assert t.value.error_class == "smtp_4xx"
    with pytest.raises(PermanentDeliveryError) as p:
        sender.send(to="ann@example.org", rendered=MSG, notification_id="n-2")
    assert p.value.error_class == "smtp_rcpt_refused"
    # The connection after a refusal still delivers (a fresh one: the refused one was dropped).
    sender.send(to="ann@example.org", rendered=MSG, notification_id="n-3")
    assert [m["X-Notification-Id"] for m in smtp_sink.wait_for(1)] == ["n-3"]


def test_smtp_server_down_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientDeliveryError) as e:
        SmtpEmail(host="127.0.0.1", port=port, sender="x@y", timeout=1).send(
            to="a@b", rendered=MSG, notification_id="n"
        )
    assert e.value.error_class == "connection"


def test_no_address_is_permanent(smtp_sink: Any) -> None:
    with pytest.raises(PermanentDeliveryError):
        smtp(smtp_sink).send(to=None, rendered=MSG, notification_id="n")


def test_pickup_dir_writes_eml(tmp_path: Any) -> None:
    PickupDirEmail(directory=tmp_path, sender="x@y").send(to="a@b", rendered=MSG, notification_id="n-7")
    assert (tmp_path / "n-7.eml").read_bytes().startswith(b"From: x@y")


def test_sms_reaches_the_provider(sms_provider: Any) -> None:
    SmsProvider(url=sms_provider.url, timeout=2).send(to="+3160", rendered=MSG, notification_id="n-2")
    [req] = sms_provider.accepted()
    assert req == {"to": "+3160", "body": "Hello", "reference": "n-2", "_idempotency_key": "n-2"}


@pytest.mark.parametrize(
    ("status", "error", "cls"),
    [
        (429, TransientDeliveryError, "http_429"),
        (500, TransientDeliveryError, "http_500"),
        (503, TransientDeliveryError, "http_503"),
        (400, PermanentDeliveryError, "http_400"),
        (404, PermanentDeliveryError, "http_404"),
    ],
)
def test_provider_answers_map_to_transient_or_permanent(
    push_provider: Any, status: int, error: type[Exception], cls: str
) -> None:
    push_provider.statuses = [status]
    with pytest.raises(error) as e:
        PushProvider(url=push_provider.url, timeout=2).send(to="tok", rendered=MSG, notification_id="n-3")
    assert e.value.error_class == cls  # type: ignore[attr-defined]
    if status == 429:
        assert e.value.retry_after == 0  # type: ignore[attr-defined]


def test_provider_timeout_is_transient(sms_provider: Any) -> None:
    sms_provider.delay = 1.0
    with pytest.raises(TransientDeliveryError) as e:
        SmsProvider(url=sms_provider.url, timeout=0.2).send(to="+31", rendered=MSG, notification_id="n")
    assert e.value.error_class == "timeout"


def test_pickup_dir_files_are_owner_only(tmp_path: Any) -> None:
    folder = tmp_path / "mail"
    PickupDirEmail(directory=folder, sender="x@y").send(to="a@b", rendered=MSG, notification_id="n-8")
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "n-8.eml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "address",
    ["ann@example.org", "a.b+tag@x.org", "o'brien@x.org", "a..b@x", "@", "Ann <ann@example.org>", "a b@x"],
)
def test_envelope_addresses_are_quoted_as_smtplib_quotes_them(address: str) -> None:
    # The pipelined send writes MAIL FROM / RCPT TO itself; plain addresses skip smtplib's parse.
    from smtplib import quoteaddr

    from booking_workers.notifications.email import _quoted

    assert _quoted(address) == quoteaddr(address)
