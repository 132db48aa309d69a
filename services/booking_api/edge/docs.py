"""/docs: Swagger UI served from a pinned package, no CDN, no inline script (the CSP allows only 'self').

FastAPI's own page loads Swagger UI from a public CDN and a favicon from another site: hospital networks
are often offline, and third-party script on the origin where staff paste tokens is a supply-chain risk.
The assets come from the `fastapi-offline` wheel (pinned in pyproject.toml; only its static files are
used), the initialiser is a script of ours, and ReDoc is not offered (its renderer needs inline styles
and blob: workers, which the policy forbids).
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

DOCS = "/docs"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def _asset_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def _page(title: str) -> str:
    t = html.escape(title)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{t} - API docs</title>
<link rel="icon" type="image/png" href="{DOCS}/assets/favicon.png">
<link rel="stylesheet" href="{DOCS}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS}/assets/swagger-ui-bundle.js"></script>
<script src="{DOCS}/init.js"></script>
</body>
</html>
"""


def _init_script(openapi_url: str) -> str:
    config = {
        "url": openapi_url,
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "deepLinking": True,
        "showExtensions": True,
        "showCommonExtensions": True,
        "validatorUrl": None,  # never send the document to the public validator
    }
    return (
        "window.addEventListener('load', function () {\n"
        f"  var config = {json.dumps(config)};\n"
        "  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];\n"
        "  window.ui = SwaggerUIBundle(config);\n"
        "});\n"
    )


def install_docs(app: FastAPI) -> None:
    """Serve /docs with local assets; the app must be built with docs_url=None and redoc_url=None."""
    router = APIRouter(include_in_schema=False)
    openapi_url = app.openapi_url or "/openapi.json"
    page = _page(app.title)
    script = _init_script(openapi_url)
    assets = _asset_dir()

    @router.get(DOCS)
    def docs_page() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get(f"{DOCS}/init.js")
    def docs_init() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    @router.get(DOCS + "/assets/{name}")
    def docs_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404)
        # The files are versioned by the pinned package: a day in the browser's cache is safe.
        return FileResponse(
            assets / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
        )

    app.include_router(router)
