"""Health, service root, cache management and pipeline status."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from logflow import __version__
from logflow.api.deps import RuntimeDep
from logflow.api.routes._json import json_response
from logflow.db.engine import ping
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
        "database": {"kind": runtime.database.dialect.name, "status": "healthy" if db_error is None else "down",
                     "detail": db_error or ""},
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
async def health(runtime: RuntimeDep) -> Response:
    """``healthy``, ``degraded`` (cache down: answers still come from the store) or ``unhealthy`` (503)."""
    code, body = await run_in_threadpool(health_report, runtime)
    return json_response(body, status_code=code)


@router.get("/")
async def root(request: Request) -> dict[str, Any]:
    """Name, version and where to go next."""
    return {
        "name": "LogFlow",
        "version": __version__,
        "docs": str(request.url_for("swagger_ui_html")),
        "redoc": "/redoc",
        "health": "/health",
        "links": {
            "search": "/api/v1/logs/search?query=error",
            "recent": "/api/v1/logs/recent?limit=5",
            "metrics": "/api/v1/metrics/overview",
            "ingest": "/api/v1/ingest",
        },
    }


@router.get("/api/v1/cache/stats", tags=["cache"])
async def cache_stats(runtime: RuntimeDep) -> dict[str, Any]:
    """The seed's cache statistics (Redis INFO fields, or the in-process cache's own counters)."""
    return asdict(await run_in_threadpool(runtime.cache.stats))


@router.delete("/api/v1/cache/clear", tags=["cache"])
async def cache_clear(
    runtime: RuntimeDep, pattern: Annotated[str | None, Query(max_length=256, examples=["metrics:*"])] = None
) -> dict[str, Any]:
    """Delete cached answers, all or those matching a glob ``pattern`` such as ``metrics:service:*``."""
    deleted = await run_in_threadpool(runtime.cache.clear, pattern)
    return {"deleted": deleted, "pattern": pattern or "*"}


@router.get("/api/v1/pipeline/status", tags=["pipeline"])
async def status(runtime: RuntimeDep) -> dict[str, Any]:
    """Queue lag per partition, processor throughput, dead letters and store size."""
    return await run_in_threadpool(pipeline_status, runtime)


@router.get("/api/v1/pipeline/dead-letters", tags=["pipeline"])
async def dead_letters(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The newest events the store refused, with the reason (payload shown as stored on the queue)."""
    letters = await run_in_threadpool(runtime.queue.read_dead_letters, limit)
    return {
        "count": len(letters),
        "dead_letters": [
            {"reason": d.reason, "at": datetime.fromtimestamp(d.at_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z"),
             "payload": d.value.decode("utf-8", errors="replace")}
            for d in letters
        ],
    }
