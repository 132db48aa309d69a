"""Minting the API's bearer JWTs: one set of claims for `booking dev-token`, `booking run` and the tests.

A token's `sub` is the patient id (role "patient") or the staff member's id (role "staff"); the API's
`booking_api.auth` verifies them against the same settings.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import jwt

from booking_core.settings import ApiSettings

Role = Literal["patient", "staff"]


def mint_token(*, settings: ApiSettings, subject: str, role: Role, now: datetime, ttl: timedelta) -> str:
    """A signed token for `subject` valid from `now` for `ttl`."""
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "role": role,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, settings.jwt_key.get_secret_value(), algorithm=settings.jwt_algorithm)
