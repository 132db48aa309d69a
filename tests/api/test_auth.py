"""Authentication fails closed: settings checks, the dev key only in dev, token size and lifetime bounds,
deactivated patients, and clinic-scoped staff (issue 10). Tokens here use a test HS256 shared secret;
tests/auth/ runs the same API against a real OpenID Connect provider (dex)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy import update

from booking_api.app import create_app
from booking_api.settings import DEV_JWT_AUDIENCE, DEV_JWT_ISSUER, DEV_JWT_KEY, ApiSettings
from booking_api.tokens import NoSigningKeyError, mint_token
from booking_api.verifier import AuthConfigError, build_verifier
from booking_core.db.models import Patient

from .conftest import Api, make_api, prod_like_settings, token_for

BOOKINGS = "/api/v1/bookings"


def _prod(**values: object) -> ApiSettings:
    return ApiSettings(environment="prod", database_url="sqlite://", **values)  # type: ignore[arg-type]


# --- fail closed at start-up -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "BOOKING_AUTH_ISSUER"),
        ({"auth_issuer": "https://idp.example.org"}, "BOOKING_AUTH_AUDIENCE"),
        ({"auth_audience": "api", "auth_shared_secret": SecretStr("x" * 40)}, "BOOKING_AUTH_ISSUER"),
        (
            {"auth_issuer": "https://i", "auth_audience": "a", "auth_shared_secret": SecretStr(DEV_JWT_KEY)},
            "published dev key",
        ),
        (
            {"auth_issuer": "https://i", "auth_audience": "a", "auth_shared_secret": SecretStr("short")},
            "shorter than 32 bytes",
        ),
        (
            {"auth_issuer": "https://i", "auth_audience": "a", "auth_algorithms": ["RS256", "HS256"]},
            "refused: ['HS256']",
        ),
        (
            {"auth_issuer": "https://i", "auth_audience": "a", "auth_algorithms": ["none"]},
            "refused: ['none']",
        ),
        ({"auth_issuer": "http://idp.example.org", "auth_audience": "a"}, "must be an https:// URL"),
        (
            {"auth_issuer": "https://i", "auth_audience": "a", "auth_jwks_url": "http://10.0.0.1/keys"},
            "BOOKING_AUTH_JWKS_URL must be an https:// URL",
        ),
        (
            {
                "auth_issuer": "https://i",
                "auth_audience": "a",
                "auth_shared_secret": SecretStr("s" * 40),
                "auth_jwks_url": "https://i/keys",
            },
            "choose one mode",
        ),
    ],
)
def test_outside_dev_missing_or_unsafe_settings_refuse_to_build(
    values: dict[str, object], named: str
) -> None:
    with pytest.raises(AuthConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        build_verifier(_prod(**values))
    with pytest.raises(AuthConfigError):
        create_app(_prod(**values))


def test_dev_key_only_in_dev_with_nothing_configured() -> None:
    assert build_verifier(ApiSettings(environment="dev")).mode == "dev"
    assert build_verifier(_prod(auth_issuer="https://i", auth_audience="a")).mode == "oidc"
    secret = _prod(auth_issuer="https://i", auth_audience="a", auth_shared_secret=SecretStr("s" * 32))
    assert build_verifier(secret).mode == "shared-secret"
    # environment=dev with a real issuer is not dev mode either: the dev key is refused there too
    assert (
        build_verifier(ApiSettings(environment="dev", auth_issuer="https://i", auth_audience="a")).mode
        == "oidc"
    )


def _booking_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
    return subprocess.run(
        [sys.executable, "-m", "booking_core.cli", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_booking_api_in_prod_without_auth_exits_naming_the_setting(tmp_path: Path) -> None:
    res = _booking_cli("api", env={"BOOKING_ENVIRONMENT": "prod", "BOOKING_PORT": "1"}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "refusing to start" in res.stderr
    assert "BOOKING_AUTH_ISSUER is not set" in res.stderr


def test_dev_token_refuses_outside_dev(tmp_path: Path) -> None:
    res = _booking_cli("dev-token", "--patient", "p1", env={"BOOKING_ENVIRONMENT": "prod"}, cwd=tmp_path)
    assert res.returncode == 2
    assert "dev key works only with BOOKING_ENVIRONMENT=dev" in res.stderr
    assert res.stdout == ""
    with pytest.raises(NoSigningKeyError):
        mint_token(
            settings=_prod(auth_issuer="https://i", auth_audience="a"),
            subject="p",
            role="patient",
            now=datetime.now(UTC),
            ttl=timedelta(minutes=5),
        )


# --- token checks on a production-configured API (shared secret) ---------------------------------------


def _sign(claims: dict[str, object], key: str, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _claims(api: Api, **over: object) -> dict[str, object]:
    now = int(datetime.now(UTC).timestamp())
    c: dict[str, object] = {
        "iss": api.settings.auth_issuer,
        "aud": api.settings.auth_audience,
        "sub": "patient-a",
        "role": "patient",
        "iat": now,
        "exp": now + 600,
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def _get(api: Api, token: str) -> tuple[int, dict[str, object]]:
    r = api.client.get(BOOKINGS, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json()


def _secret(api: Api) -> str:
    assert api.settings.auth_shared_secret is not None
    return api.settings.auth_shared_secret.get_secret_value()


def test_a_valid_token_is_accepted(api: Api) -> None:
    assert _get(api, _sign(_claims(api), _secret(api)))[0] == 200


def test_dev_key_tokens_are_refused_by_a_configured_api(api: Api) -> None:
    # with the deployment's issuer and audience, and with the dev ones `booking dev-token` uses
    for claims in (_claims(api), _claims(api, iss=DEV_JWT_ISSUER, aud=DEV_JWT_AUDIENCE)):
        status, body = _get(api, _sign(claims, DEV_JWT_KEY))
        assert status == 401, body


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"exp": None}, "invalid token"),
        ({"iat": None}, "invalid token"),
        ({"iss": "https://other"}, "invalid token"),
        ({"aud": "other-api"}, "invalid token"),
        ({"exp": int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())}, "token lifetime too long"),
        ({"exp": int((datetime.now(UTC) + timedelta(days=2)).timestamp())}, "token lifetime too long"),
        ({"exp": int((datetime.now(UTC) - timedelta(hours=1)).timestamp())}, "token expired"),
        ({"role": "admin"}, "invalid token role"),
        ({"sub": "x" * 65}, "invalid token subject"),
    ],
)
def test_bad_claims_are_refused(api: Api, over: dict[str, object], message: str) -> None:
    status, body = _get(api, _sign(_claims(api, **over), _secret(api)))
    assert status == 401
    assert body["error"]["message"] == message  # type: ignore[index]


def test_alg_none_is_refused(api: Api) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(api)).encode()).rstrip(b"=")
    assert _get(api, f"{header.decode()}.{payload.decode()}.")[0] == 401


def test_oversized_token_is_refused_before_decoding(api: Api) -> None:
    big = _sign(_claims(api, pad="x" * 9000), _secret(api))  # validly signed, just too large
    status, body = _get(api, big)
    assert status == 401
    assert body["error"]["message"] == "token too large"  # type: ignore[index]
    # a 1.3 MB token (seen accepted before) is refused at the edge, before the headers reach the app
    assert _get(api, "a" * 1_300_000)[0] == 431


# --- deactivated patients ---------------------------------------------------------------------------


def test_deactivated_patient_is_refused_on_every_patient_route(api: Api) -> None:
    routes = [BOOKINGS, "/api/v1/test-results", f"/api/v1/test-results/{api.world.result_a}"]
    for path in routes:
        assert api.client.get(path, headers=api.auth("patient-a")).status_code == 200, path
    with api.sessions() as s:
        s.execute(update(Patient).where(Patient.id == "patient-a").values(active=False))
        s.commit()
    for path in routes:
        r = api.client.get(path, headers=api.auth("patient-a"))
        assert r.status_code == 403, path
        assert r.json()["error"]["code"] == "patient_deactivated"
    assert api.book(api.world.slot5).status_code == 403
    # other patients are untouched
    assert api.client.get(BOOKINGS, headers=api.auth("patient-b")).status_code == 200


# --- clinic-scoped staff ----------------------------------------------------------------------------


@pytest.fixture
def scoped(db_url: str):  # type: ignore[no-untyped-def]
    """The API with staff scoped by the `groups` claim ("staff", "clinic:<code>"), as an IdP would send."""
    settings = prod_like_settings(
        db_url, auth_role_claim="groups", auth_clinic_claim="groups", auth_clinic_prefix="clinic:"
    )
    yield from make_api(db_url, settings)


def _staff_calls(api: Api, headers: dict[str, str]) -> dict[str, int]:
    c, slot = api.world.clinic_id, api.world.slot5
    base = "/api/v1/staff"
    return {
        "list_slots": api.client.get(f"{base}/clinics/{c}/slots", headers=headers).status_code,
        "list_schedules": api.client.get(f"{base}/clinics/{c}/schedules", headers=headers).status_code,
        "update_slot": api.client.patch(
            f"{base}/slots/{slot}", json={"capacity": 6}, headers=headers
        ).status_code,
    }


def test_scoped_staff_manage_only_their_clinics(scoped: Api) -> None:
    api = scoped
    own = _staff_calls(api, api.auth("nurse-1", "staff", clinics=["C1"]))
    assert own == {"list_slots": 200, "list_schedules": 200, "update_slot": 200}
    every = _staff_calls(api, api.auth("admin-1", "staff", clinics=["*"]))
    assert every == {"list_slots": 200, "list_schedules": 200, "update_slot": 200}
    other = _staff_calls(api, api.auth("nurse-2", "staff", clinics=["C2"]))
    assert other == {"list_slots": 403, "list_schedules": 403, "update_slot": 404}
    # fail closed: with scoping on, a staff token without any clinic manages none
    none = _staff_calls(api, api.auth("nurse-3", "staff", clinics=[]))
    assert none == {"list_slots": 403, "list_schedules": 403, "update_slot": 404}
    # a scoped staff member cannot create a slot in another clinic either
    r = api.client.post(
        f"/api/v1/staff/clinics/{api.world.clinic_id}/slots",
        json={
            "service_code": "blood-draw",
            "starts_at": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            "ends_at": (datetime.now(UTC) + timedelta(days=5, minutes=15)).isoformat(),
            "capacity": 1,
        },
        headers=api.auth("nurse-2", "staff", clinics=["C2"]),
    )
    assert r.status_code == 403


def test_patient_claims_and_roles_come_from_settings(db_url: str) -> None:
    settings = prod_like_settings(db_url, auth_patient_id_claim="patient_id", auth_role_claim="groups")
    apis = make_api(db_url, settings)
    try:
        _check_claim_mapping(next(apis), settings)
    finally:
        apis.close()


def _check_claim_mapping(api: Api, settings: ApiSettings) -> None:
    key = _secret(api)
    now = int(datetime.now(UTC).timestamp())
    base = {"iss": "https://issuer.test", "aud": "pat-booking-api", "iat": now, "exp": now + 600}
    # `sub` is the IdP's opaque id; the patient id is in `patient_id`
    tok = _sign({**base, "sub": "opaque-1", "patient_id": "patient-a", "groups": ["patient"]}, key)
    r = api.client.get(
        f"/api/v1/test-results/{api.world.result_a}", headers={"Authorization": f"Bearer {tok}"}
    )
    assert r.status_code == 200
    staff = _sign({**base, "sub": "opaque-2", "groups": ["staff", "other"]}, key)
    r = api.client.get(
        f"/api/v1/staff/clinics/{api.world.clinic_id}/slots", headers={"Authorization": f"Bearer {staff}"}
    )
    assert r.status_code == 200
    assert token_for(settings, "patient-a")  # the helper follows the claim names


def test_a_hanging_provider_does_not_hold_every_request(db_url: str) -> None:
    """A JWKS endpoint that accepts connections and never answers: one request waits out the timeout,
    the next ones fail fast (503) instead of queueing behind it."""
    import socket
    import time

    from cryptography.hazmat.primitives.asymmetric import rsa

    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(64)  # never accepted: connects succeed, reads time out
        port = hang.getsockname()[1]
        settings = prod_like_settings(
            db_url,
            auth_shared_secret=None,
            auth_issuer=f"http://127.0.0.1:{port}",
            auth_jwks_url=f"http://127.0.0.1:{port}/keys",
            auth_http_timeout_seconds=1.0,
        )
        apis = make_api(db_url, settings)
        try:
            api = next(apis)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            now = int(datetime.now(UTC).timestamp())
            claims = {
                "iss": settings.auth_issuer,
                "aud": "pat-booking-api",
                "sub": "p",
                "iat": now,
                "exp": now + 60,
            }
            token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
            started = time.monotonic()
            statuses = [_get_status(api, token) for _ in range(10)]
            elapsed = time.monotonic() - started
        finally:
            apis.close()
    assert statuses == [503] * 10
    assert elapsed < 5, f"10 requests took {elapsed:.1f}s: each waited for the provider"


def _get_status(api: Api, token: str) -> int:
    return api.client.get(BOOKINGS, headers={"Authorization": f"Bearer {token}"}).status_code
