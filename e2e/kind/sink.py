"""Stand-ins for the providers outside the cluster, for the kind e2e: an SMTP sink, HTTP SMS/push endpoints.

Everything received is kept in memory and listed by GET /messages (JSON), so the suite can check what the
notification worker delivered. Standard library only: it runs on the platform image with `python`.
"""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SMTP_PORT, HTTP_PORT = 2525, 8080
_lock = threading.Lock()
_received: dict[str, list[dict[str, Any]]] = {"mail": [], "sms": [], "push": []}


def _keep(kind: str, item: dict[str, Any]) -> None:
    with _lock:
        _received[kind].append(item)
    print(json.dumps({"received": kind, "size": len(json.dumps(item))}), flush=True)  # no content: it is PHI


class Smtp(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 for smtplib: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; one or more mails."""

    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self.reply("220 sink ESMTP")
        sender, rcpts = "", []
        while line := self.rfile.readline():
            cmd = line.decode("utf-8", "replace").strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8" if verb == "EHLO" else "250 sink")
            elif verb == "MAIL":
                sender, rcpts = cmd.partition(":")[2].strip(), []
                self.reply("250 OK")
            elif verb == "RCPT":
                rcpts.append(cmd.partition(":")[2].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    body.append(data[1:] if data.startswith(b"..") else data)
                _keep(
                    "mail", {"from": sender, "to": rcpts, "data": b"".join(body).decode("utf-8", "replace")}
                )
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class Http(BaseHTTPRequestHandler):
    """POST /sms and /push record the JSON body; GET /messages lists everything; GET /healthz."""

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        kind = self.path.strip("/")
        if kind not in ("sms", "push"):
            self._send(404, {"error": "not found"})
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _keep(
            kind, {"body": json.loads(raw or b"{}"), "idempotency_key": self.headers.get("Idempotency-Key")}
        )
        self._send(200, {"status": "accepted"})

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif self.path == "/messages":
            with _lock:
                self._send(200, _received)
        else:
            self._send(404, {"error": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    """Serve SMTP and HTTP until killed."""
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    smtp = socketserver.ThreadingTCPServer(("0.0.0.0", SMTP_PORT), Smtp)
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Http).serve_forever()


if __name__ == "__main__":
    main()
