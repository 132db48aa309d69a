"""A small bounded cache of verified bearer tokens: a portal sends the same token on every request.

Keyed by the token's SHA-256 (the cache never holds a usable credential), each entry lives until the
token's `exp` or for the JWKS cache lifetime, whichever ends first, and only while the key set it was
verified against is the current one: once the provider's keys are fetched again (a rotation), every
token is checked against the new set, so a withdrawn key stops being trusted exactly as without this
cache. Only successes are cached: a bad token is checked (and refused) every time.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime

from booking_api.auth import Principal


class VerifiedTokens:
    """token hash -> (principal, valid until as a POSIX timestamp, key set), least recently used first out."""

    def __init__(self, *, max_entries: int, max_age_seconds: float) -> None:
        self._max_entries = max_entries
        self._max_age = max_age_seconds
        self._entries: OrderedDict[bytes, tuple[Principal, float, object]] = OrderedDict()
        self._lock = threading.Lock()  # verification also runs on the thread pool

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str, now: datetime, keys: object = None) -> Principal | None:
        """The principal of a token verified before against `keys` (the current key set, compared by
        identity) and not yet expired, else None."""
        if self._max_entries == 0:
            return None
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            principal, until, verified_with = entry
            if now.timestamp() >= until or verified_with is not keys:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return principal

    def put(
        self, token: str, principal: Principal, *, exp: float, now: datetime, keys: object = None
    ) -> None:
        """Remember a token the verifier accepted, until min(exp, now + max age)."""
        if self._max_entries == 0:
            return
        until = min(exp, now.timestamp() + self._max_age)
        key = self._key(token)
        with self._lock:
            self._entries[key] = (principal, until, keys)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
