"""Bearer token verification, built from ApiSettings, failing closed.

Three modes: OpenID Connect (issuer, audience, asymmetric algorithms, keys from the issuer's JWKS), an
HS256 shared secret (small installs), or the published dev key, which only environment=dev with nothing
configured gets (`booking run`). Anything else refuses to start with the missing setting's name.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK

from booking_api.auth import AuthError, ClaimRules, Principal
from booking_api.jwks import JwksKeys, KeysUnavailableError, UnknownKeyError
from booking_api.settings import DEV_JWT_AUDIENCE, DEV_JWT_ISSUER, DEV_JWT_KEY, ApiSettings
from booking_api.tokencache import VerifiedTokens

# Asymmetric only: HS* with a provider's public key is the classic confusion attack, `none` is no signature.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key of at least 256 bits

OIDC_HELP = (
    "outside BOOKING_ENVIRONMENT=dev the API verifies tokens with OpenID Connect (BOOKING_AUTH_ISSUER, "
    "BOOKING_AUTH_AUDIENCE, optionally BOOKING_AUTH_JWKS_URL) or an HS256 shared secret "
    "(BOOKING_AUTH_SHARED_SECRET with BOOKING_AUTH_ISSUER and BOOKING_AUTH_AUDIENCE)"
)


class AuthConfigError(Exception):
    """The verification settings are missing or unsafe; the message names the setting."""


class ProviderUnavailableError(Exception):
    """The identity provider's keys could not be fetched: the token could not be checked (503)."""


KeyLookup = Callable[[dict[str, Any]], "str | PyJWK"]


@dataclass(frozen=True)
class Verifier:
    """Checks a bearer token and returns its principal."""

    mode: str  # "oidc", "shared-secret" or "dev"
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    key_for: KeyLookup
    rules: ClaimRules
    max_bytes: int
    max_lifetime_seconds: int
    leeway_seconds: int
    # Tokens verified before (None: verify every time); see booking_api.tokencache.
    cache: VerifiedTokens | None = None
    # The key set in use now, without any request (compared by identity; None for a static key).
    current_keys: Callable[[], object] = lambda: None

    def cached(self, token: str, now: datetime) -> Principal | None:
        """The principal of a token this verifier accepted before and that is still valid, else None."""
        return self.cache.get(token, now, self.current_keys()) if self.cache is not None else None

    def verify(self, token: str, now: datetime) -> Principal:
        """The principal of a valid token; AuthError (401) or ProviderUnavailableError (503) otherwise."""
        hit = self.cached(token, now)
        if hit is not None:
            return hit
        # Refuse before any decoding: a 1 MB token costs base64 and JSON work for nothing.
        if len(token) > self.max_bytes:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("invalid token") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError("invalid token")
        # Read before the lookup: if the lookup fetches a new set, the entry is already stale.
        keys = self.current_keys()
        try:
            key = self.key_for(header)
        except UnknownKeyError as exc:
            raise AuthError("invalid token") from exc
        except KeysUnavailableError as exc:
            raise ProviderUnavailableError(str(exc)) from exc
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=self.leeway_seconds,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid token") from exc
        # A token valid for years is a stolen credential that never stops working.
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp - now.timestamp() > self.max_lifetime_seconds:
            raise AuthError("token lifetime too long")
        principal = self.rules.principal(claims)
        if self.cache is not None:
            # Until exp itself, without the leeway the check above grants: never longer than unchecked.
            self.cache.put(token, principal, exp=float(exp), now=now, keys=keys)
        return principal


def _require(value: str | None, name: str) -> str:
    if not value:
        raise AuthConfigError(f"BOOKING_{name} is not set: {OIDC_HELP}")
    return value


def _check_url(url: str, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:  # a provider on this machine (tests, sidecars) is not reachable by an attacker
            return
    raise AuthConfigError(f"BOOKING_{name} must be an https:// URL (http only on loopback), got {url!r}")


def _jwks_lookup(keys: JwksKeys) -> KeyLookup:
    def key_for(header: dict[str, Any]) -> PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnknownKeyError("the token names no key (kid)")
        return keys.key(kid)

    return key_for


def _static(key: str) -> KeyLookup:
    return lambda _header: key


def _verifier(
    settings: ApiSettings,
    *,
    mode: str,
    issuer: str,
    audience: str,
    algorithms: tuple[str, ...],
    key_for: KeyLookup,
    current_keys: Callable[[], object] = lambda: None,
) -> Verifier:
    return Verifier(
        mode=mode,
        issuer=issuer,
        audience=audience,
        algorithms=algorithms,
        key_for=key_for,
        current_keys=current_keys,
        rules=ClaimRules.from_settings(settings),
        max_bytes=settings.auth_max_token_bytes,
        max_lifetime_seconds=settings.auth_max_token_lifetime_minutes * 60,
        leeway_seconds=settings.auth_leeway_seconds,
        cache=VerifiedTokens(
            max_entries=settings.auth_token_cache_size,
            # A key the provider withdraws is refused at the next JWKS refresh: cached tokens no later.
            max_age_seconds=settings.auth_jwks_cache_seconds,
        )
        if settings.auth_token_cache_size
        else None,
    )


def _tls_context(settings: ApiSettings) -> ssl.SSLContext | None:
    """Only BOOKING_AUTH_CA_FILE's CAs for the provider's HTTPS; None: the HTTP clients' defaults."""
    ca = settings.auth_ca_file
    if ca is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise AuthConfigError(f"BOOKING_AUTH_CA_FILE {ca} is not a readable PEM CA bundle: {exc}") from exc


def build_verifier(settings: ApiSettings) -> Verifier:
    """The verifier the settings describe; AuthConfigError naming what is missing or unsafe."""
    if settings.dev_auth:
        return _verifier(
            settings,
            mode="dev",
            issuer=DEV_JWT_ISSUER,
            audience=DEV_JWT_AUDIENCE,
            algorithms=("HS256",),
            key_for=_static(DEV_JWT_KEY),
        )
    issuer = _require(settings.auth_issuer, "AUTH_ISSUER")
    audience = _require(settings.auth_audience, "AUTH_AUDIENCE")
    secret = settings.auth_shared_secret
    if secret is not None:
        if settings.auth_jwks_url:
            raise AuthConfigError(
                "BOOKING_AUTH_SHARED_SECRET and BOOKING_AUTH_JWKS_URL are both set: choose one mode"
            )
        value = secret.get_secret_value()
        if value == DEV_JWT_KEY:
            raise AuthConfigError("BOOKING_AUTH_SHARED_SECRET is the published dev key: use a real secret")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise AuthConfigError(f"BOOKING_AUTH_SHARED_SECRET is shorter than {MIN_SECRET_BYTES} bytes")
        return _verifier(
            settings,
            mode="shared-secret",
            issuer=issuer,
            audience=audience,
            algorithms=("HS256",),
            key_for=_static(value),
        )
    bad = [a for a in settings.auth_algorithms if a not in ASYMMETRIC_ALGORITHMS]
    if bad or not settings.auth_algorithms:
        raise AuthConfigError(
            f"BOOKING_AUTH_ALGORITHMS must list asymmetric algorithms from {sorted(ASYMMETRIC_ALGORITHMS)}; "
            f"refused: {bad or 'an empty list'}"
        )
    _check_url(issuer, "AUTH_ISSUER")
    if settings.auth_jwks_url:
        _check_url(settings.auth_jwks_url, "AUTH_JWKS_URL")
    keys = JwksKeys(
        issuer=issuer,
        jwks_url=settings.auth_jwks_url,
        tls=_tls_context(settings),
        cache_seconds=settings.auth_jwks_cache_seconds,
        refresh_cooldown_seconds=settings.auth_jwks_refresh_cooldown_seconds,
        timeout=settings.auth_http_timeout_seconds,
    )
    return _verifier(
        settings,
        mode="oidc",
        issuer=issuer,
        audience=audience,
        algorithms=tuple(settings.auth_algorithms),
        key_for=_jwks_lookup(keys),
        current_keys=keys.current_set,
    )
