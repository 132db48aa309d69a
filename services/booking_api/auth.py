"""Bearer JWT authentication: issuer, audience and key from ApiSettings.

A token's `sub` is the patient id (role "patient") or the staff member's id (role "staff").
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from booking_core.settings import ApiSettings
from booking_core.tokens import Role, mint_token

# Minting lives in booking_core (`booking run` signs demo tokens too); re-exported for the API's callers.
__all__ = ["AuthError", "Principal", "Role", "decode_token", "mint_token"]


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
