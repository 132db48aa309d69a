"""Security headers: no-store on authenticated answers, nosniff everywhere, CSP, HSTS only over TLS."""

from __future__ import annotations

from pathlib import Path

from .edge_helpers import edge_api

BASELINE = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


def _has(headers, expected: dict[str, str]) -> bool:
    return all(headers.get(k) == v for k, v in expected.items())


def test_phi_answers_are_not_stored_and_not_sniffed(api) -> None:
    mine = api.client.get(f"/api/v1/test-results/{api.world.result_a}", headers=api.auth())
    assert mine.status_code == 200 and mine.json()["observations"]
    assert _has(mine.headers, BASELINE) and mine.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in mine.headers["content-security-policy"]
    for denied in (
        api.client.get("/api/v1/test-results", headers={"Authorization": "Bearer forged"}),
        api.client.get("/api/v1/staff/clinics/x/slots", headers=api.auth()),
        api.client.get("/api/v1/bookings"),
    ):
        assert denied.status_code in (401, 403)
        assert _has(denied.headers, BASELINE) and denied.headers["cache-control"] == "no-store"
    public = api.client.get("/api/v1/clinics")
    assert public.status_code == 200 and _has(public.headers, BASELINE)
    assert "strict-transport-security" not in public.headers  # plain HTTP


def test_hsts_over_tls_directly_or_from_a_trusted_proxy(tmp_path: Path) -> None:
    with edge_api(f"sqlite:///{tmp_path}/tls.db", base_url="https://testserver") as api:
        r = api.client.get("/api/v1/clinics")
        assert r.headers["strict-transport-security"].startswith("max-age=31536000")
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    # TestClient's peer address is "testclient": trusted here, untrusted by default.
    with edge_api(f"sqlite:///{tmp_path}/proxy.db", trusted_proxies="testclient") as api:
        assert "strict-transport-security" in api.client.get("/api/v1/clinics", headers=https).headers
        assert "strict-transport-security" not in api.client.get("/api/v1/clinics").headers
    with edge_api(f"sqlite:///{tmp_path}/untrusted.db") as api:
        assert "strict-transport-security" not in api.client.get("/api/v1/clinics", headers=https).headers


def test_docs_page_uses_only_its_own_assets(api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200 and _has(page.headers, BASELINE)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe" not in csp and "http" not in csp
    html = page.text
    assert "http://" not in html and "https://" not in html and "<script>" not in html  # no inline script
    for src in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js"):
        assert src in html
        asset = api.client.get(src)
        assert asset.status_code == 200 and len(asset.content) > 50, src
    assert api.client.get("/docs/init.js").headers["content-type"].startswith("text/javascript")
    assert api.client.get("/docs/assets/redoc.standalone.js").status_code == 404
    assert api.client.get("/docs/assets/..%2F__init__.py").status_code == 404
    assert api.client.get("/redoc").status_code == 404
