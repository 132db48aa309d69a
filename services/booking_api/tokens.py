"""Minting HS256 bearer JWTs: for `booking dev-token`, `booking run` and the tests.

Tokens are signed with the dev key when the settings use it (environment=dev, nothing configured), or with
the configured shared secret; claim names follow the settings, so `booking_api.verifier` reads them back.
Deployments with OpenID Connect get their tokens from the identity provider, never from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from booking_api.settings import DEV_JWT_AUDIENCE, DEV_JWT_ISSUER, DEV_JWT_KEY, ApiSettings

Role = Literal["patient", "staff"]


class NoSigningKeyError(RuntimeError):
    """The settings name no HS256 key this process may sign with (OIDC, or no secret outside dev)."""


def signing_params(settings: ApiSettings) -> tuple[str, str, str]:
    """(key, issuer, audience) for HS256 tokens under `settings`; NoSigningKeyError when there is none."""
    if settings.dev_auth:
        return DEV_JWT_KEY, DEV_JWT_ISSUER, DEV_JWT_AUDIENCE
    if settings.auth_shared_secret is not None and settings.auth_issuer and settings.auth_audience:
        return settings.auth_shared_secret.get_secret_value(), settings.auth_issuer, settings.auth_audience
    raise NoSigningKeyError("tokens come from the identity provider: no HS256 key is configured")


def mint_token(
    *,
    settings: ApiSettings,
    subject: str,
    role: Role,
    now: datetime,
    ttl: timedelta,
    clinics: Iterable[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed token for `subject` valid from `now` for `ttl` (clinics: the staff member's clinic claim)."""
    key, issuer, audience = signing_params(settings)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    claims[settings.auth_patient_id_claim] = subject
    role_value = settings.auth_staff_role if role == "staff" else settings.auth_patient_role
    claims[settings.auth_role_claim] = role_value
    if clinics is not None and settings.auth_clinic_claim:
        scoped = [f"{settings.auth_clinic_prefix}{c}" for c in clinics]
        # One list claim may carry both (an IdP's `groups`: ["staff", "clinic:C1"]).
        same = settings.auth_clinic_claim == settings.auth_role_claim
        claims[settings.auth_clinic_claim] = [role_value, *scoped] if same else scoped
    claims.update(extra or {})
    return jwt.encode(claims, key, algorithm="HS256")
