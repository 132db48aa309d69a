"""Email over SMTP (smtplib), and a pickup-directory variant for `booking run`."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from booking_core.privatefiles import private_dir, write_private
from booking_workers.notifications.errors import PermanentDeliveryError, TransientDeliveryError
from booking_workers.notifications.templates import Rendered


def build_message(*, sender: str, to: str, rendered: Rendered, notification_id: str) -> EmailMessage:
    """A plain-text email; the opaque notification id rides in a header for tracing complaints."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = rendered.subject
    # Stable per notification: a resend after a crash between the server's 250 and our record (SMTP has
    # no idempotency key) carries the same Message-ID, which mail stores use to drop the duplicate.
    msg["Message-ID"] = f"<{notification_id}@{_domain(sender)}>"
    msg["X-Notification-Id"] = notification_id
    msg.set_content(rendered.body)
    return msg


def _domain(sender: str) -> str:
    return sender.rpartition("@")[2] or "pat-booking.local"


def _plain(value: str, limit: int) -> bool:
    """ASCII without line breaks and short enough to need no folding or encoding."""
    return value.isascii() and len(value) <= limit and "\r" not in value and "\n" not in value


def message_bytes(*, sender: str, to: str, rendered: Rendered, notification_id: str) -> bytes | None:
    """The bytes `smtplib` would send for `build_message(...)` (CRLF), written directly when nothing
    needs encoding or folding: `EmailMessage` parses every header through its policy's registry (0.4 ms
    of CPU per mail, issue 15's profile). None for anything non-ASCII, long or with a line break: such
    a mail is built by `EmailMessage` (tests/workers/test_channels.py checks both give the same bytes)."""
    body = rendered.body
    lines = body.split("\n")
    if not (
        _plain(sender, 200)
        and _plain(to, 200)
        and _plain(rendered.subject, 60)
        and _plain(notification_id, 60)
        and body.isascii()
        and "\r" not in body
        and all(len(line) <= 78 for line in lines)
    ):
        return None
    if not body.endswith("\n"):
        lines.append("")
    text = "\r\n".join(lines)
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {rendered.subject}\r\n"
        f"Message-ID: <{notification_id}@{_domain(sender)}>\r\nX-Notification-Id: {notification_id}\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n'
        f"MIME-Version: 1.0\r\n\r\n{text}"
    ).encode("ascii")


_LEADING_DOT = re.compile(rb"(?m)^\.")
# An address of these characters only is its own addr-spec: `smtplib.quoteaddr` (an RFC 2822 parse,
# 1.5% of the worker's GIL time) would return it unchanged in angle brackets.
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~@-]+")


def _quoted(address: str) -> str:
    return f"<{address}>" if _BARE_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def send_pipelined(smtp: smtplib.SMTP, sender: str, to: str, data: bytes) -> None:
    """One mail of CRLF-terminated bytes, in as few round trips as the server allows, raising what
    `smtplib.SMTP.sendmail` raises for the same replies.

    `sendmail` waits for the server after each of MAIL, RCPT, DATA and the message: four round trips.
    With PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one write (two round trips); with CHUNKING too
    (RFC 3030, Postfix and most MTAs offer both) MAIL, RCPT and `BDAT <n> LAST` with the message (one).
    The mail is delivered once the last reply is 250, exactly as with `sendmail`; on any other reply the
    caller drops the connection, so replies left unread never matter.
    """
    smtp.ehlo_or_helo_if_needed()
    features = smtp.esmtp_features  # what has_extn reads, lower-cased keys
    if "pipelining" not in features:
        smtp.sendmail(sender, [to], data)
        return
    mail = f"MAIL FROM:{_quoted(sender)}"
    if "size" in features:
        mail += f" SIZE={len(data)}"
    head = f"{mail}\r\nRCPT TO:{_quoted(to)}\r\n"
    chunking = "chunking" in features
    if chunking:
        smtp.send(f"{head}BDAT {len(data)} LAST\r\n".encode("ascii") + data)
    else:
        smtp.send(f"{head}DATA\r\n".encode("ascii"))
    code, reply = smtp.getreply()
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = smtp.getreply()
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
    code, reply = smtp.getreply()
    if not chunking:
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        smtp.send(_LEADING_DOT.sub(b"..", data) + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, reply = smtp.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


# A connection unused for longer is checked with NOOP before the next message (servers drop idle ones).
NOOP_AFTER_IDLE_SECONDS = 1.0


class SmtpEmail:
    """Sends over SMTP; 4xx is transient, 5xx permanent. Each worker thread keeps one open connection
    instead of paying connect + EHLO for every message; one that idled is checked with NOOP first (a
    NOOP before every message was one SMTP round trip in five, issue 15's profile)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        timeout: float,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.starttls, self.username, self.password = starttls, username, password
        self._local = threading.local()

    def _connection(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is not None:
            if time.monotonic() - getattr(self._local, "used_at", 0.0) <= NOOP_AFTER_IDLE_SECONDS:
                return smtp  # just used: a dropped one fails the send, which retries (transient)
            try:
                if smtp.noop()[0] == 250:
                    return smtp
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if self.username and self.password:
            smtp.login(self.username, self.password)
        self._local.smtp = smtp
        return smtp

    def _drop(self) -> None:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def send(self, *, to: str | None, rendered: Rendered, notification_id: str) -> None:
        """Deliver one email or raise a DeliveryError."""
        if not to:
            raise PermanentDeliveryError("no_address")
        data = message_bytes(sender=self.sender, to=to, rendered=rendered, notification_id=notification_id)
        try:
            if data is not None:
                send_pipelined(self._connection(), self.sender, to, data)
            else:
                self._connection().send_message(
                    build_message(
                        sender=self.sender, to=to, rendered=rendered, notification_id=notification_id
                    )
                )
            self._local.used_at = time.monotonic()
        except smtplib.SMTPRecipientsRefused as exc:
            self._drop()
            codes = [code for code, _ in exc.recipients.values()]
            if all(400 <= c < 500 for c in codes):
                raise TransientDeliveryError("smtp_4xx") from None
            raise PermanentDeliveryError("smtp_rcpt_refused") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            # from None: SMTP replies may echo the address back.
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError("smtp_4xx") from None
            raise PermanentDeliveryError("smtp_5xx") from None
        except TimeoutError:
            self._drop()
            raise TransientDeliveryError("timeout") from None
        except (smtplib.SMTPException, OSError):
            self._drop()
            raise TransientDeliveryError("connection") from None


class PickupDirEmail:
    """Writes each email as an .eml file: `booking run` shows mail without an SMTP server."""

    def __init__(self, *, directory: Path, sender: str) -> None:
        self.directory, self.sender = directory, sender

    def send(self, *, to: str | None, rendered: Rendered, notification_id: str) -> None:
        """Write one email file or raise a DeliveryError."""
        if not to:
            raise PermanentDeliveryError("no_address")
        msg = build_message(sender=self.sender, to=to, rendered=rendered, notification_id=notification_id)
        # Emails carry names and appointment details: owner-only files, in an owner-only folder when we
        # create it (an existing pickup folder an MTA reads keeps the mode its operator gave it).
        if not self.directory.is_dir():
            private_dir(self.directory)
        tmp = self.directory / f".{uuid.uuid4().hex}.tmp"
        write_private(tmp, bytes(msg))
        tmp.replace(self.directory / f"{notification_id}.eml")
