"""The API against a real OpenID Connect provider (dex): tokens obtained over OIDC's password grant,
keys from the provider's JWKS, a key rotation picked up without restarting the API, and the dev key
refused by a production-configured API (issue 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from booking_api.settings import DEV_JWT_AUDIENCE, DEV_JWT_ISSUER, DEV_JWT_KEY, ApiSettings
from booking_testing.dex import API_CLIENT, PATIENT_CLIENT, Dex
from booking_testing.procs import free_port
from booking_testing.wait import wait_for

from .conftest import Api, make_api

BOOKINGS = "/api/v1/bookings"

# How a deployment maps dex's claims: the patient id in preferred_username, role and clinics in groups.
CLAIMS = {
    "auth_patient_id_claim": "preferred_username",
    "auth_role_claim": "groups",
    "auth_clinic_claim": "groups",
    "auth_clinic_prefix": "clinic:",
}


def oidc_settings(dex: Dex, db_url: str, **over: object) -> ApiSettings:
    """A production API verifying tokens from `dex` (discovery: no JWKS URL given)."""
    values: dict[str, object] = {
        "database_url": db_url,
        "environment": "prod",
        "auth_issuer": dex.issuer,
        "auth_audience": API_CLIENT,
        **CLAIMS,
        **over,
    }
    return ApiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def oidc_api(dex: Dex, tmp_path: Path) -> Iterator[Api]:
    """The API (SQLite) configured for dex, with a 1 s refresh cooldown so rotations show quickly."""
    db = f"sqlite:///{tmp_path}/oidc.db"
    yield from make_api(db, oidc_settings(dex, db, auth_jwks_refresh_cooldown_seconds=1.0))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _dev_token(subject: str, *, issuer: str, audience: str) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "preferred_username": subject}
    return jwt.encode({**claims, "iat": now, "exp": now + 600}, DEV_JWT_KEY, algorithm="HS256")


def test_patient_and_staff_tokens_from_the_provider_are_accepted(oidc_api: Api, dex: Dex) -> None:
    api = oidc_api
    patient = dex.token("patient-a")
    assert api.client.get(BOOKINGS, headers=_bearer(patient)).status_code == 200
    r = api.client.get(f"/api/v1/test-results/{api.world.result_a}", headers=_bearer(patient))
    assert r.status_code == 200
    # another patient's result stays invisible
    other = dex.token("patient-b")
    r = api.client.get(f"/api/v1/test-results/{api.world.result_a}", headers=_bearer(other))
    assert r.status_code == 404
    # a patient token on a staff route, and a staff token on a patient route
    slots = f"/api/v1/staff/clinics/{api.world.clinic_id}/slots"
    assert api.client.get(slots, headers=_bearer(patient)).status_code == 403
    staff = dex.token("staff-c1")
    assert api.client.get(BOOKINGS, headers=_bearer(staff)).status_code == 403
    assert api.client.get(slots, headers=_bearer(staff)).status_code == 200


def test_clinic_scope_comes_from_the_providers_groups(oidc_api: Api, dex: Dex) -> None:
    api = oidc_api
    slots = f"/api/v1/staff/clinics/{api.world.clinic_id}/slots"
    patch = f"/api/v1/staff/slots/{api.world.slot5}"
    assert api.client.get(slots, headers=_bearer(dex.token("staff-all"))).status_code == 200
    # staff-none is staff but lists no clinic: it manages none (403 on the clinic, 404 on its slot)
    none = _bearer(dex.token("staff-none"))
    assert api.client.get(slots, headers=none).status_code == 403
    assert api.client.patch(patch, json={"capacity": 7}, headers=none).status_code == 404
    assert (
        api.client.patch(patch, json={"capacity": 7}, headers=_bearer(dex.token("staff-c1"))).status_code
        == 200
    )


def test_dev_key_and_wrong_audience_tokens_are_refused(oidc_api: Api, dex: Dex) -> None:
    api = oidc_api
    for token in (
        _dev_token("patient-a", issuer=DEV_JWT_ISSUER, audience=DEV_JWT_AUDIENCE),
        _dev_token("patient-a", issuer=dex.issuer, audience=API_CLIENT),  # HS256 is not an allowed algorithm
    ):
        assert api.client.get(BOOKINGS, headers=_bearer(token)).status_code == 401
    # a token dex issued to the portal alone (no audience scope for the API) is not for us
    portal_only = dex.token("patient-a", client=PATIENT_CLIENT, audience=None)
    r = api.client.get(BOOKINGS, headers=_bearer(portal_only))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "invalid token"


def test_a_key_rotation_is_picked_up_without_restarting_the_api(oidc_api: Api, dex: Dex) -> None:
    api = oidc_api
    before = dex.token("patient-a")
    assert api.client.get(BOOKINGS, headers=_bearer(before)).status_code == 200
    old_kid = jwt.get_unverified_header(before)["kid"]
    dex.restart()  # in-memory storage: new signing keys, the old ones are gone
    after = dex.token("patient-a")
    assert jwt.get_unverified_header(after)["kid"] != old_kid

    def accepted() -> bool:
        return api.client.get(BOOKINGS, headers=_bearer(after)).status_code == 200

    wait_for(accepted, timeout=15, what="the API to accept a token signed with the rotated key")
    # the old key is no longer published, so its tokens stop working
    assert api.client.get(BOOKINGS, headers=_bearer(before)).status_code == 401


def test_unknown_kids_refetch_the_keys_at_most_once_per_cooldown(dex: Dex, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/oidc.db"
    # Past the failed-auth rate limit (20/min), 429 would hide whether the keys were refetched.
    settings = oidc_settings(
        dex, db, auth_jwks_refresh_cooldown_seconds=60.0, rate_limit_auth_failures="100/minute"
    )
    apis = make_api(db, settings)
    try:
        api = next(apis)
        assert api.client.get(BOOKINGS, headers=_bearer(dex.token("patient-a"))).status_code == 200
        fetched = dex.keys_requests()
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        claims = {
            "iss": dex.issuer,
            "aud": API_CLIENT,
            "sub": "x",
            "preferred_username": "patient-a",
            "iat": now,
            "exp": now + timedelta(minutes=5),
        }
        for i in range(30):
            forged = jwt.encode(claims, forger, algorithm="RS256", headers={"kid": f"made-up-{i}"})
            assert api.client.get(BOOKINGS, headers=_bearer(forged)).status_code == 401
        assert dex.keys_requests() - fetched <= 1
    finally:
        apis.close()


def test_provider_down_answers_503_not_401(dex: Dex, tmp_path: Path) -> None:
    # An issuer where nothing listens: the token cannot be checked, which is not the caller's fault.
    db = f"sqlite:///{tmp_path}/oidc.db"
    settings = oidc_settings(
        dex, db, auth_issuer=f"http://127.0.0.1:{free_port()}/dex", auth_http_timeout_seconds=1
    )
    apis = make_api(db, settings)
    try:
        api = next(apis)
        r = api.client.get(BOOKINGS, headers=_bearer(dex.token("patient-a")))
        assert r.status_code == 503
        assert r.headers["Retry-After"]
    finally:
        apis.close()


def test_cached_keys_keep_working_while_the_provider_is_down(dex: Dex, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/oidc.db"
    apis = make_api(db, oidc_settings(dex, db, auth_jwks_refresh_cooldown_seconds=0.0))
    try:
        api = next(apis)
        token = dex.token("patient-a")
        assert api.client.get(BOOKINGS, headers=_bearer(token)).status_code == 200  # keys now cached
        dex.stop()
        # an unknown kid makes the API try to refetch, which fails: 503 for that token ...
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            jwt.decode(token, options={"verify_signature": False}),
            forger,
            algorithm="RS256",
            headers={"kid": "new"},
        )
        assert api.client.get(BOOKINGS, headers=_bearer(forged)).status_code == 503
        # ... but the cached keys still verify everyone else's tokens
        assert api.client.get(BOOKINGS, headers=_bearer(token)).status_code == 200
    finally:
        apis.close()
        if dex.server is None:
            dex.start()


def test_booking_api_process_with_oidc_settings(dex: Dex, tmp_path: Path) -> None:
    """`booking api` as deployed: BOOKING_ENVIRONMENT=prod plus OIDC env, served over real HTTP."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
    env.update(
        {
            "BOOKING_ENVIRONMENT": "prod",
            "BOOKING_DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
            "BOOKING_PORT": str(port),
            "BOOKING_AUTH_ISSUER": dex.issuer,
            "BOOKING_AUTH_AUDIENCE": API_CLIENT,
            **{f"BOOKING_{k.upper()}": v for k, v in CLAIMS.items()},
        }
    )
    booking = [sys.executable, "-m", "booking_core.cli"]
    subprocess.run([*booking, "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([*booking, "api"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200,
            timeout=60,
            what="booking api",
            ignore=(httpx.TransportError,),
        )
        ok = httpx.get(f"{base}{BOOKINGS}", headers=_bearer(dex.token("patient-a")), timeout=10)
        assert ok.status_code == 200, ok.text
        dev = _dev_token("patient-a", issuer=DEV_JWT_ISSUER, audience=DEV_JWT_AUDIENCE)
        refused = httpx.get(f"{base}{BOOKINGS}", headers=_bearer(dev), timeout=10)
        assert refused.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
