"""What held before the edge work must keep holding behind it: forged tokens are refused (and audited, and
never cached), patients cannot use staff routes, another patient's records answer 404.

Expiry, issuer and audience checks belong to the authentication tests (test_auth.py); these forgeries need
no knowledge of the verifier's key, so they hold whatever mode it runs in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from booking_core.db.models_audit import AccessDeniedLog


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(api) -> dict[str, object]:
    """The claims of a token the app accepts (read, not verified): forgeries below reuse them."""
    valid = api.auth("patient-a")["Authorization"].split(" ", 1)[1]
    claims: dict[str, object] = jwt.decode(valid, options={"verify_signature": False})
    return claims


def _unsigned(claims: dict[str, object], alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_secret(claims: dict[str, object], secret: bytes) -> str:
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def forged_tokens(api, key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Tokens with the accepted claims that no verifier may accept (no knowledge of its key needed)."""
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = _claims(api)
    valid = api.auth("patient-a")["Authorization"].split(" ", 1)[1]
    return {
        "alg none": _unsigned(good),
        "alg NONE": _unsigned(good, "NONE"),
        "RS256 by a stranger": jwt.encode(good, key, algorithm="RS256"),
        "HS256 keyed with a public key": _hs256_with_secret(good, public_pem),
        "HS256 with another secret": jwt.encode(
            good, "another-secret-0123456789abcdef0123", algorithm="HS256"
        ),
        "signature stripped": valid.rsplit(".", 1)[0] + ".",
        "claims swapped under a valid signature": ".".join(
            [
                valid.split(".")[0],
                _b64(json.dumps({**good, "sub": "patient-b"}).encode()),
                valid.split(".")[2],
            ]
        ),
    }


def test_forged_tokens_are_refused_and_audited(api, rsa_key) -> None:
    tokens = forged_tokens(api, rsa_key)
    for name, token in tokens.items():
        r = api.client.get("/api/v1/test-results", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, name
        assert r.headers["cache-control"] == "no-store"
    with api.sessions() as s:
        rows = s.scalars(select(AccessDeniedLog)).all()
    assert len(rows) == len(tokens) and {r.actor for r in rows} == {"anonymous"}


def test_patient_tokens_do_not_open_staff_routes(api) -> None:
    cid = api.world.clinic_id
    for method, path in (
        ("GET", f"/api/v1/staff/clinics/{cid}/slots"),
        ("GET", f"/api/v1/staff/clinics/{cid}/schedules"),
        ("PATCH", f"/api/v1/staff/slots/{api.world.slot1}"),
    ):
        r = api.client.request(method, path, headers=api.auth("patient-a"), json={"capacity": 9})
        assert r.status_code == 403, (method, path)


def test_another_patients_records_answer_404(api) -> None:
    booking = api.book(api.world.slot5, subject="patient-a").json()["id"]
    for path in (f"/api/v1/bookings/{booking}", f"/api/v1/test-results/{api.world.result_a}"):
        assert api.client.get(path, headers=api.auth("patient-b")).status_code == 404, path
        assert api.client.get(path, headers=api.auth("patient-a")).status_code == 200, path
    r = api.client.post(f"/api/v1/bookings/{booking}/cancel", headers=api.auth("patient-b"))
    assert r.status_code == 404
