"""Opaque keyset cursors for paged lists ordered by (starts_at, id).

A cursor is base64url JSON naming the last row of a page and a fingerprint of the search it belongs to.
It is validated, not signed: it only positions a reader within a public list, so a forged one can show
nothing a fresh search would not; a malformed cursor, or one from another search, answers 422.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from booking_core.domain.errors import InvalidValueError

VERSION = "s1"
MAX_CURSOR_CHARS = 256
MAX_ID_CHARS = 64
FIELD = "query.cursor"


@dataclass(frozen=True)
class Position:
    """The last row of a page: the next page starts strictly after it."""

    starts_at: datetime
    id: str


@lru_cache(maxsize=4096)  # a portal repeats the same few searches; a digest per request showed up
def fingerprint(*parts: object) -> str:
    """A short digest of a search's parameters: a cursor is only valid for the search that made it."""
    raw = json.dumps([None if p is None else str(p) for p in parts], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode(position: Position, search: str) -> str:
    """The opaque cursor of `position` within `search` (a fingerprint)."""
    raw = json.dumps([VERSION, position.starts_at.isoformat(), position.id, search], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode(cursor: str, search: str) -> Position:
    """The position a cursor names; InvalidValueError (422 on `query.cursor`) when it is not one of ours."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidValueError(FIELD, "invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidValueError(FIELD, "invalid cursor") from exc
    if not (isinstance(value, list) and len(value) == 4 and value[0] == VERSION):
        raise InvalidValueError(FIELD, "invalid cursor")
    _, when, row_id, made_for = value
    if made_for != search:
        raise InvalidValueError(FIELD, "the cursor belongs to another search: start again without it")
    if not isinstance(when, str) or not isinstance(row_id, str) or not 0 < len(row_id) <= MAX_ID_CHARS:
        raise InvalidValueError(FIELD, "invalid cursor")
    try:
        starts_at = datetime.fromisoformat(when)
    except ValueError as exc:
        raise InvalidValueError(FIELD, "invalid cursor") from exc
    if starts_at.tzinfo is None:
        raise InvalidValueError(FIELD, "invalid cursor")
    return Position(starts_at=starts_at, id=row_id)
