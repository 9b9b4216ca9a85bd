"""/docs (Swagger UI) and /redoc served with their assets from LogFlow itself, never from a CDN.

Log platforms often run where the browser cannot reach the internet (on-premise, air-gapped). FastAPI's
default pages load Swagger UI and Redoc from a CDN and fonts from Google; these pages use the copies
bundled in the ``fastapi-offline`` package instead, so the page renders wherever the API is reachable
and its Content-Security-Policy can stay at ``'self'``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_PREFIX = "/docs/assets"
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _assets_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Add the documentation pages to ``app`` (created with ``docs_url=None, redoc_url=None``)."""
    assets = _assets_dir()
    files = {p.name: p for p in assets.iterdir() if p.suffix in _MEDIA}
    title = f"{app.title} — API"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui_html() -> HTMLResponse:  # the name FastAPI uses: url_for("swagger_ui_html")
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PREFIX}/favicon.png",
            oauth2_redirect_url=oauth2_redirect,
            # "Authorize" then signs in through the OAuth2 password form of /api/v1/auth/login.
            init_oauth={"clientId": "logflow-docs"},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url=f"{ASSETS_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PREFIX}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(ASSETS_PREFIX + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        path = files.get(name)  # only the bundled files: no path is ever built from user input
        if path is None:
            raise HTTPException(404, f"no documentation asset {name!r}")
        return FileResponse(path, media_type=_MEDIA[path.suffix],
                            headers={"Cache-Control": "public, max-age=86400"})
