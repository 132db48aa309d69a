"""The API against an OpenID Connect provider on HTTPS with a certificate from an internal CA (dex with a
CA made per run): trusted only through BOOKING_AUTH_CA_FILE (spec.auth.caBundleRef), never by accident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from booking_api.verifier import AuthConfigError, build_verifier
from booking_testing.dex import Dex, start_dex

from .conftest import make_api
from .test_oidc import BOOKINGS, oidc_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dex_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dex]:
    """A second dex, serving HTTPS on loopback with a certificate from its own CA (`dex.tls.ca`)."""
    dex = start_dex(tmp_path_factory.mktemp("dex-https"), https=True)
    yield dex
    dex.stop()


def _get_bookings(dex: Dex, tmp_path: Path, **over: object) -> int:
    db = f"sqlite:///{tmp_path}/oidc-tls.db"
    apis = make_api(db, oidc_settings(dex, db, auth_http_timeout_seconds=2, **over))
    try:
        api = next(apis)
        token = dex.token("patient-a")
        return api.client.get(BOOKINGS, headers={"Authorization": f"Bearer {token}"}).status_code
    finally:
        apis.close()


def test_a_provider_behind_an_internal_ca_is_trusted_via_the_ca_file(dex_https: Dex, tmp_path: Path) -> None:
    assert dex_https.issuer.startswith("https://")
    assert dex_https.tls is not None
    assert _get_bookings(dex_https, tmp_path, auth_ca_file=dex_https.tls.ca) == 200


def test_without_the_ca_file_the_provider_is_not_trusted(dex_https: Dex, tmp_path: Path) -> None:
    # The system's CAs do not know the internal one: the keys cannot be fetched, which is 503, never a pass.
    assert _get_bookings(dex_https, tmp_path) == 503


def test_another_ca_is_not_enough(dex_https: Dex, tmp_path: Path) -> None:
    other = start_dex(tmp_path / "other", https=True)
    try:
        assert other.tls is not None
        assert _get_bookings(dex_https, tmp_path, auth_ca_file=other.tls.ca) == 503
    finally:
        other.stop()


def test_an_unreadable_ca_file_stops_start_up_naming_the_setting(dex_https: Dex, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    db = f"sqlite:///{tmp_path}/x.db"
    for path in (bad, tmp_path / "missing.pem"):
        with pytest.raises(AuthConfigError, match="BOOKING_AUTH_CA_FILE"):
            build_verifier(oidc_settings(dex_https, db, auth_ca_file=path))
