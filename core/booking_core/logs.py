"""Structured JSON logging that cannot print patient data.

Only an allowlist of `extra` fields is emitted and exception messages are dropped (drivers put row
values in them); the message text itself is written by developers and must not interpolate PHI.
Dramatiq's own log lines interpolate job arguments, so they are redacted on the way out.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
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


_DRAMATIQ_CODE = f"{os.sep}dramatiq{os.sep}"


class _Placeholder:
    """Stands in for a redacted log argument; renders the same under %s and %r."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _redact_arg(arg: object) -> object:
    message_id = getattr(arg, "message_id", None)
    if message_id is not None and hasattr(arg, "actor_name"):
        return _Placeholder(f"<message {message_id}>")
    if isinstance(arg, Mapping | list | tuple | set | frozenset):
        return _Placeholder("<redacted>")
    return arg


class RedactDramatiqArgs(logging.Filter):
    """Dramatiq logs a message as `actor(patient_id=..., ...)` and an actor its kwargs (at debug level):
    in records from dramatiq's code a message keeps only its id and argument containers are hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the arguments of dramatiq's records; never drops a record."""
        # By source file as well as logger name: an actor logs under its own module's name.
        from_dramatiq = record.name.startswith("dramatiq") or _DRAMATIQ_CODE in record.pathname
        if from_dramatiq and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_redact_arg(a) for a in args)
        return True


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
    # On the handler, not dramatiq's loggers: those are created per class and per actor at any time.
    handler.addFilter(RedactDramatiqArgs())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers that echo payloads or SQL parameters stay quiet.
    for noisy in ("sqlalchemy.engine", "httpx", "httpcore", "kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
