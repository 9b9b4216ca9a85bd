"""Health, service root, cache management and pipeline status."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from logflow import __version__
from logflow.api.deps import RuntimeDep
from logflow.api.routes._json import json_response
from logflow.auth.deps import AdminUser, AuthDep, Principal, ReadAccess, audit, resolve_principal
from logflow.auth.service import AuthService
from logflow.backends.errors import ReplayInProgress
from logflow.db.engine import ping
from logflow.ingest.protocols import elasticsearch as es_protocol
from logflow.ingest.replay import ReplayInterrupted, ReplayReport, replay_dead_letters
from logflow.runtime import Runtime
from logflow.status import pipeline_status

router = APIRouter(tags=["system"])


def health_report(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """Each backend's state; 503 when a required one (queue, store, database) is down."""
    queue = runtime.queue.stats(runtime.settings.processor_group)
    store = runtime.store.stats()
    db_error = ping(runtime.database)
    cache_ok = runtime.cache.healthy()
    services = {
        "queue": {"kind": queue.kind, "status": "healthy" if queue.healthy else "down", "detail": queue.detail},
        "store": {"kind": store.kind, "status": "healthy" if store.healthy else "down", "detail": store.detail},
        "database": {
            "kind": runtime.database.dialect.name,
            "status": "healthy" if db_error is None else "down",
            "detail": db_error or "",
        },
        "cache": {"kind": runtime.cache.kind, "status": "healthy" if cache_ok else "degraded"},
    }
    required_ok = queue.healthy and store.healthy and db_error is None
    status = "unhealthy" if not required_ok else "healthy" if cache_ok else "degraded"
    body = {
        "status": status,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "version": __version__,
        "services": services,
    }
    return (200 if required_ok else 503), body


@router.get("/health")
async def health(runtime: RuntimeDep, auth: AuthDep) -> Response:
    """``healthy``, ``degraded`` (cache down: answers still come from the store) or ``unhealthy`` (503).

    ``warnings`` lists security problems an operator must fix, e.g. the default admin password.
    """
    code, body = await run_in_threadpool(health_report, runtime)
    body["warnings"] = await run_in_threadpool(security_warnings, auth)
    return json_response(body, status_code=code)


def security_warnings(auth: AuthService) -> list[str]:
    """What /health flags: admins still on the published default password."""
    try:
        names = auth.default_password_accounts()
    except SQLAlchemyError:  # the database line of the report already says it is down
        return []
    return [f"admin account {name!r} uses the default password admin123: change it now" for name in names]


@router.get("/")
@router.head("/", include_in_schema=False)
async def root(request: Request, runtime: RuntimeDep) -> Response:
    """Name, version and where to go next; also Elasticsearch's ``GET /`` info for shippers.

    ``name``, ``cluster_name``, ``cluster_uuid``, ``version.number`` and ``tagline`` are what
    Elasticsearch answers (shippers read ``version.number``); ``version.logflow`` is LogFlow's own
    version. Anonymous, but wrong credentials are a 401 in ES's shape (as Elasticsearch does), so a
    shipper with a bad API key fails its connection check instead of its first batch.
    """
    try:
        await resolve_principal(request)
    except HTTPException as exc:
        error = es_protocol.error_body(exc.status_code, "security_exception", str(exc.detail))
        response = json_response(error, exc.status_code, es_protocol.PRODUCT_HEADERS)
        for challenge in es_protocol.CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
        return response
    body = es_protocol.info_body(es_protocol.deployment_uuid(runtime.settings))
    body["version"]["logflow"] = __version__
    body.update({
        "docs": str(request.url_for("swagger_ui_html")),
        "redoc": "/redoc",
        "health": "/health",
        "links": {
            "search": "/api/v1/logs/search?query=error",
            "recent": "/api/v1/logs/recent?limit=5",
            "metrics": "/api/v1/metrics/overview",
            "ingest": "/api/v1/ingest",
            "elasticsearch_bulk": "/_bulk",
        },
    })
    return json_response(body, headers=es_protocol.PRODUCT_HEADERS)


@router.get("/api/v1/cache/stats", tags=["cache"])
async def cache_stats(runtime: RuntimeDep, _: ReadAccess) -> dict[str, Any]:
    """The seed's cache statistics (Redis INFO fields, or the in-process cache's own counters)."""
    return asdict(await run_in_threadpool(runtime.cache.stats))


@router.delete("/api/v1/cache/clear", tags=["cache"])
async def cache_clear(
    runtime: RuntimeDep,
    admin: AdminUser,
    request: Request,
    pattern: Annotated[str | None, Query(max_length=256, examples=["metrics:*"])] = None,
) -> dict[str, Any]:
    """Delete cached answers (admin): all, or those matching a glob ``pattern`` like ``metrics:service:*``."""
    deleted = await run_in_threadpool(runtime.cache.clear, pattern)
    await run_in_threadpool(
        audit, runtime, admin, "cache_cleared", f"cache:{pattern or '*'}", request, {"deleted": deleted}
    )
    return {"deleted": deleted, "pattern": pattern or "*"}


@router.get("/api/v1/pipeline/status", tags=["pipeline"])
async def status(runtime: RuntimeDep, _: ReadAccess, request: Request) -> dict[str, Any]:
    """Queue lag per partition, processor throughput, dead letters, store size and this process's
    syslog/GELF listeners (address and counters each; empty when none runs here)."""
    body = await run_in_threadpool(pipeline_status, runtime)
    listeners = getattr(request.app.state, "listeners", None)
    body["listeners"] = listeners.stats() if listeners is not None else {}
    return body


@router.get("/api/v1/pipeline/dead-letters", tags=["pipeline"])
async def dead_letters(
    runtime: RuntimeDep, _: ReadAccess, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """The newest events the store refused, with the reason (payload shown as stored on the queue)."""
    letters = await run_in_threadpool(runtime.queue.read_dead_letters, limit)
    return {
        "count": len(letters),
        "dead_letters": [
            {
                "reason": d.reason,
                "at": datetime.fromtimestamp(d.at_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z"),
                "payload": d.value.decode("utf-8", errors="replace"),
            }
            for d in letters
        ],
    }


@router.post(
    "/api/v1/pipeline/dead-letters/replay",
    tags=["pipeline"],
    responses={409: {"description": "a replay is running already"},
               503: {"description": "the queue failed part way; `report` tells what was replayed before"}},
)
async def replay(
    runtime: RuntimeDep,
    admin: AdminUser,
    request: Request,
    dry_run: bool = False,
    limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
) -> Response:
    """Put the dead letters not replayed yet back on the queue, oldest first (admin).

    For after the cause is fixed (a write-blocked index unblocked, processors upgraded): the
    processors then store them again, each event once. ``dry_run`` only counts them, by reason.
    A payload that is no LogFlow queue format is counted as ``unreadable`` and passed over.
    """
    try:
        report = await run_in_threadpool(replay_dead_letters, runtime.queue, limit=limit, dry_run=dry_run)
    except ReplayInProgress as exc:
        return json_response({"detail": str(exc)}, status_code=409)
    except ReplayInterrupted as exc:
        await _audit_replay(runtime, admin, request, exc.report)
        body = {"detail": f"replay stopped part way: {exc.cause}", "report": exc.report.to_json()}
        return json_response(body, status_code=503, headers={"Retry-After": "5"})
    await _audit_replay(runtime, admin, request, report)
    return json_response(report.to_json())


async def _audit_replay(runtime: Runtime, admin: Principal, request: Request, report: ReplayReport) -> None:
    if not report.dry_run:
        await run_in_threadpool(
            audit, runtime, admin, "dead_letters_replayed", "dead-letters", request,
            {"replayed": report.replayed, "unreadable": report.unreadable, "remaining": report.remaining},
        )
