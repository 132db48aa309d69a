"""The verified-token cache: hits only for tokens accepted before, never past exp, bounded, per key set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from booking_api.auth import AuthError, Principal
from booking_api.settings import ApiSettings
from booking_api.tokencache import VerifiedTokens
from booking_api.tokens import mint_token
from booking_api.verifier import build_verifier


def _settings(**over: object) -> ApiSettings:
    return ApiSettings(database_url="sqlite://", **over)  # type: ignore[arg-type]


def _token(settings: ApiSettings, subject: str, now: datetime, minutes: int = 10) -> str:
    return mint_token(
        settings=settings, subject=subject, role="patient", now=now, ttl=timedelta(minutes=minutes)
    )


def test_an_accepted_token_is_served_from_the_cache_until_its_exp() -> None:
    settings = _settings()
    verifier = build_verifier(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    token = _token(settings, "patient-a", now, minutes=3)  # shorter than the JWKS lifetime (5 min)
    assert verifier.cached(token, now) is None
    assert verifier.verify(token, now) == Principal(subject="patient-a", role="patient")
    assert verifier.cached(token, now + timedelta(minutes=2)) == Principal(
        subject="patient-a", role="patient"
    )
    # From exp on the cache has nothing: verification (which refuses it past the leeway) runs again.
    assert verifier.cached(token, now + timedelta(minutes=3)) is None


def test_refused_tokens_are_never_cached() -> None:
    settings = _settings()
    verifier = build_verifier(settings)
    now = datetime.now(UTC)
    token = _token(settings, "patient-a", now)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(AuthError):
            verifier.verify(forged, now)
        assert verifier.cached(forged, now) is None


def test_the_cache_is_bounded_and_can_be_turned_off() -> None:
    settings = _settings(auth_token_cache_size=2)
    verifier = build_verifier(settings)
    now = datetime.now(UTC)
    tokens = [_token(settings, f"patient-{i}", now) for i in range(3)]
    for t in tokens:
        verifier.verify(t, now)
    assert verifier.cached(tokens[0], now) is None  # least recently used, evicted
    assert verifier.cached(tokens[2], now) is not None
    off = build_verifier(_settings(auth_token_cache_size=0))
    off.verify(tokens[0], now)
    assert off.cache is None and off.cached(tokens[0], now) is None


def test_entries_belong_to_the_key_set_they_were_verified_with() -> None:
    cache = VerifiedTokens(max_entries=10, max_age_seconds=300)
    now = datetime.now(UTC)
    p = Principal(subject="patient-a", role="patient")
    first, second = object(), object()
    cache.put("tok", p, exp=now.timestamp() + 600, now=now, keys=first)
    assert cache.get("tok", now, first) == p
    assert cache.get("tok", now, second) is None  # the provider's keys were fetched again
    # At most max_age, even for a long-lived token.
    cache.put("tok", p, exp=now.timestamp() + 6000, now=now, keys=first)
    assert cache.get("tok", now + timedelta(seconds=301), first) is None
