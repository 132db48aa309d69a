"""/docs renders its list of operations in headless Chromium with no way out to the internet.

Chromium comes from Debian's package (scripts/infra/chromium.sh, run by `make provision`). The browser
gets no route out: every host name fails to resolve except the loopback address the app listens on, and
every other connection goes to a dead proxy. As a control, FastAPI's stock page (script and stylesheet
from a public CDN) renders nothing under the same flags, so the test shows the flags really cut the
network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from booking_api.app import create_app
from booking_api.settings import ApiSettings
from booking_core.db.migrate import upgrade
from booking_testing.procs import free_port

from .edge_helpers import served


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail("chromium is not installed (scripts/infra/chromium.sh); CI=true never skips")
    pytest.skip("chromium is not installed: run scripts/infra/chromium.sh")


def _dump_dom(url: str, profile: Path) -> tuple[str, str]:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server={dead_proxy}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_docs_render_the_operations_offline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/docs.db"
    upgrade(url)
    app = create_app(ApiSettings(database_url=url))
    paths = list(app.openapi()["paths"])
    with served(app) as port:
        dom, log = _dump_dom(f"http://127.0.0.1:{port}/docs", tmp_path / "profile")
    assert 'class="swagger-ui' in dom, dom[:2000]
    # Every path of the document is listed as an operation block.
    rendered = [p for p in paths if f'data-path="{p}"' in dom]
    assert rendered == paths, sorted(set(paths) - set(rendered))
    assert dom.count('class="opblock opblock-') >= len(paths)
    # Chromium logs every CSP violation to its console (seen on stderr with --enable-logging).
    assert "Content Security Policy" not in log, log[-3000:]


def test_the_stock_cdn_page_renders_nothing_under_the_same_flags(tmp_path: Path) -> None:
    control = FastAPI(docs_url=None, redoc_url=None)

    @control.get("/cdn-docs", response_class=HTMLResponse)
    def cdn_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="control")

    with served(control) as port:
        dom, _ = _dump_dom(f"http://127.0.0.1:{port}/cdn-docs", tmp_path / "profile")
    assert "cdn.jsdelivr.net" in dom  # the page asked for the CDN ...
    assert "opblock" not in dom and 'class="swagger-ui' not in dom  # ... and got nothing
