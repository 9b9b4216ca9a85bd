"""The FastAPI application factory."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from logflow import __version__
from logflow.api import docs_pages, security
from logflow.api.routes import admin, alerts, auth, elasticsearch, gelf, ingest, logs, loki, metrics, otlp, system
from logflow.auth import startup
from logflow.auth.deps import rate_limit_request
from logflow.auth.errors import AuthError
from logflow.auth.service import AuthService
from logflow.backends.errors import BackendUnavailable, QueueFull, StorageFull
from logflow.ingest.decode import BodyError
from logflow.ingest.listeners import Listeners
from logflow.runtime import Runtime

log = logging.getLogger("logflow.api")

DESCRIPTION = """
LogFlow ingests logs through one durable pipeline, indexes them for full-text search and
serves metrics. A 2xx on ingest means the accepted events are durable in the queue.
"""


def _error(status: int, detail: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain and backend errors to clear HTTP answers (never a bare 500 for user input)."""

    @app.exception_handler(BodyError)
    async def _body(_: Request, exc: BodyError) -> JSONResponse:
        return _error(exc.code, exc.reason)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        response = _error(exc.status, exc.detail, exc.retry_after)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(QueueFull)
    async def _full(_: Request, exc: QueueFull) -> JSONResponse:
        return _error(503, f"queue is full: {exc}", exc.retry_after_s)

    @app.exception_handler(StorageFull)
    async def _disk(_: Request, exc: StorageFull) -> JSONResponse:
        return _error(507, f"insufficient storage: {exc}", exc.retry_after_s)

    @app.exception_handler(BackendUnavailable)
    async def _down(_: Request, exc: BackendUnavailable) -> JSONResponse:
        log.warning("backend unavailable: %s", exc)
        return _error(503, f"backend unavailable: {exc}", 5)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
                  for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": errors}, status_code=422)


def create_app(runtime: Runtime, listeners: Listeners | None = None) -> FastAPI:
    """An app serving ``runtime``'s backends; the caller owns the runtime's lifetime.

    Runs the start-up security checks first: raises ``StartupRefused`` (production with a weak
    secret or admin password, CORS ``*`` with credentials) before anything listens. ``listeners``
    (syslog, GELF) run while the app runs (its lifespan); without them nothing binds their ports.
    """
    auth_service = AuthService.for_runtime(runtime)
    report = startup.prepare(runtime)
    # Every request is charged to the API rate limit of its principal (or address).
    app = FastAPI(title="LogFlow", version=__version__, description=DESCRIPTION,
                  dependencies=[Depends(rate_limit_request)], docs_url=None, redoc_url=None,
                  lifespan=listeners.lifespan if listeners else None)  # syslog/GELF listeners run with the app
    docs_pages.install(app)  # /docs and /redoc with bundled assets (no CDN)
    app.state.runtime = runtime
    app.state.auth = auth_service
    app.state.startup = report
    app.state.listeners = listeners
    install_error_handlers(app)
    for module in (system, auth, admin, ingest, logs, metrics, alerts, elasticsearch, otlp, loki, gelf):
        app.include_router(module.router)
    security.install(app, runtime.settings)
    return app
