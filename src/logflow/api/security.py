"""Transport security for every response: security headers, HSTS over TLS, CORS from an allowlist.

A pure ASGI middleware (not ``BaseHTTPMiddleware``): it only edits the ``http.response.start``
message, so streaming bodies and the ingest hot path pay almost nothing for it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logflow.auth.deps import WARNING_HEADER
from logflow.settings import Settings

# The API answers JSON only: nothing may load, run or frame anything.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# /docs (Swagger UI) and /redoc load their bundled scripts and styles from this server (no CDN), run
# one inline bootstrap script, and Redoc starts a blob: web worker. Only these pages get this.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DOCS_PATHS = ("/docs", "/redoc")
HSTS = "max-age=31536000; includeSubDomains"

_STATIC = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the security headers to every HTTP response, plus the per-request warning header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        docs = path.startswith(DOCS_PATHS)
        tls = scope.get("scheme") == "https"
        no_store = path.startswith(("/api/v1/auth", "/api/v1/admin"))  # tokens, keys, audit data

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [h for h in _STATIC if h[0] not in present]
                extra.append((b"content-security-policy", (DOCS_CSP if docs else API_CSP).encode()))
                if tls:
                    extra.append((b"strict-transport-security", HSTS.encode()))
                if no_store:
                    extra.append((b"cache-control", b"no-store"))
                state: MutableMapping[str, Any] = scope.get("state", {})
                warning = state.get("logflow_warning")
                if warning:
                    extra.append((WARNING_HEADER.lower().encode(), str(warning).encode("latin-1", "replace")))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """CORS (only for listed origins) inside the security headers, so preflight answers get them too."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials and "*" not in settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding", "X-API-Key"],
            expose_headers=["Retry-After", WARNING_HEADER],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
