"""The identity provider's signing keys: OIDC discovery, then PyJWT's JWKS client.

The JWK set is cached (auth_jwks_cache_seconds); a token with an unknown `kid` (the provider rotated its
keys) refetches it, at most once per auth_jwks_refresh_cooldown_seconds, so a flood of made-up `kid`s
cannot turn into a flood of requests to the provider.
"""

from __future__ import annotations

import ssl
import threading
import time

import httpx
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWTError

DISCOVERY_PATH = "/.well-known/openid-configuration"


class KeysUnavailableError(Exception):
    """The provider could not be reached to fetch its keys (the token may be fine: answer 503)."""


class UnknownKeyError(Exception):
    """The token names a key the provider does not publish."""


def discover_jwks_url(issuer: str, *, timeout: float, tls: ssl.SSLContext | None = None) -> str:
    """The `jwks_uri` of the issuer's discovery document, which must name the same issuer."""
    url = issuer.rstrip("/") + DISCOVERY_PATH
    try:
        resp = httpx.get(url, timeout=timeout, follow_redirects=False, verify=tls or True)
        resp.raise_for_status()
        doc = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise KeysUnavailableError(f"OIDC discovery failed at {url}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("issuer") != issuer or not isinstance(doc.get("jwks_uri"), str):
        raise KeysUnavailableError(f"OIDC discovery at {url} does not describe issuer {issuer}")
    jwks_uri: str = doc["jwks_uri"]
    return jwks_uri


class JwksKeys:
    """Signing keys by `kid`, from a configured JWKS URL or the one the issuer's discovery names."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None,
        cache_seconds: float,
        refresh_cooldown_seconds: float,
        timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._issuer = issuer
        self._tls = tls
        self._jwks_url = jwks_url
        self._cache_seconds = cache_seconds
        self._cooldown = refresh_cooldown_seconds
        self._timeout = timeout
        self._client: PyJWKClient | None = None
        self._lock = threading.Lock()
        # After a failed fetch, fail fast for a while: with the provider hanging, every request would
        # otherwise wait out the timeout in turn, and the API's threads would pile up behind it.
        self._down_until = 0.0

    def _jwk_client(self) -> PyJWKClient:
        # Discovery is lazy: the API starts (and answers health checks) while the provider is down.
        with self._lock:
            if self._client is None:
                url = self._jwks_url or discover_jwks_url(self._issuer, timeout=self._timeout, tls=self._tls)
                self._client = PyJWKClient(
                    url,
                    cache_jwk_set=True,
                    lifespan=self._cache_seconds,
                    timeout=self._timeout,
                    cooldown_duration=self._cooldown,
                    ssl_context=self._tls,
                )
            return self._client

    def current_set(self) -> object:
        """The cached key set object (a new one after every fetch), or None; never makes a request."""
        cache = self._client.jwk_set_cache if self._client is not None else None
        return cache.get() if cache is not None else None

    def _cached(self, kid: str) -> PyJWK | None:
        """The key from the cached set, without any request (None when not cached or expired)."""
        cache = self._client.jwk_set_cache if self._client is not None else None
        jwk_set = cache.get() if cache is not None else None
        if jwk_set is None:
            return None
        return next((k for k in jwk_set.keys if k.key_id == kid and k.public_key_use in ("sig", None)), None)

    def key(self, kid: str) -> PyJWK:
        """The published key `kid`; UnknownKeyError or KeysUnavailableError otherwise."""
        if time.monotonic() < self._down_until:
            cached = self._cached(kid)
            if cached is not None:
                return cached
            raise KeysUnavailableError("the identity provider failed recently")
        try:
            client = self._jwk_client()
            return client.get_signing_key(kid)
        except (KeysUnavailableError, PyJWKClientConnectionError) as exc:
            self._down_until = time.monotonic() + max(self._cooldown, 1.0)
            raise KeysUnavailableError(str(exc)) from exc
        except PyJWTError as exc:  # no such kid, or a set with no usable key
            raise UnknownKeyError(kid) from exc
