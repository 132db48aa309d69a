"""Structured JSON logging that cannot print patient data.

Only an allowlist of `extra` fields is emitted and exception messages are dropped (drivers put row
values in them); the message text itself is written by developers and must not interpolate PHI.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

# Fields a log call may attach with `extra=`; anything else is dropped, so a careless
# `extra={"patient_name": ...}` never reaches the log stream.
SAFE_FIELDS = frozenset(
    {
        "component",
        "event",
        "event_type",
        "topic",
        "partition",
        "offset",
        "group",
        "queue",
        "actor",
        "task",
        "status",
        "outcome",
        "reason",
        "count",
        "duration_ms",
        "attempt",
        "channel",
        "booking_id",
        "slot_id",
        "clinic_id",
        "message_id",
        "request_id",
        "method",
        "path",
        "status_code",
        "namespace",
        "kind",
        "generation",
        "tier",
        "trace_id",
    }
)
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the allowlisted extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in SAFE_FIELDS and key not in _RESERVED:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            # The exception's message may carry SQL parameters or payloads: type and frames only.
            out["exc_type"] = exc_type.__name__
            # frames as file:line:function only; source lines can hold literals worth hiding too
            frames = traceback.extract_tb(tb)[-20:]
            out["stack"] = " <- ".join(f"{f.filename}:{f.lineno}:{f.name}" for f in reversed(frames))
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format; call once from an entrypoint."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers that echo payloads or SQL parameters stay quiet.
    for noisy in ("sqlalchemy.engine", "httpx", "httpcore", "kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
