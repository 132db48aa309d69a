"""Bearer JWT authentication: issuer, audience and key from ApiSettings.

A token's `sub` is the patient id (role "patient") or the staff member's id (role "staff").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

from booking_core.settings import ApiSettings

Role = Literal["patient", "staff"]


class AuthError(Exception):
    """The token is missing, malformed, expired or signed by someone else."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a patient (sees only their own records) or a staff member."""

    subject: str
    role: Role

    @property
    def actor(self) -> str:
        """The audit log's actor string, e.g. "patient:<id>"."""
        return f"{self.role}:{self.subject}"


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


def decode_token(token: str, settings: ApiSettings) -> Principal:
    """The principal of a valid token; AuthError otherwise (the reason is safe to show)."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("invalid token") from exc
    sub = claims.get("sub")
    role = claims.get("role", "patient")
    if not isinstance(sub, str) or not sub or len(sub) > 64:
        raise AuthError("invalid token subject")
    if role not in ("patient", "staff"):
        raise AuthError("invalid token role")
    return Principal(subject=sub, role=role)
