"""Log search: ``/api/v1/logs/search`` (GET and POST), ``/recent`` and ``/{id}``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool

from logflow.api.deps import RuntimeDep
from logflow.api.params import parse_levels, split_multi, time_window
from logflow.api.routes._json import json_response
from logflow.api.schemas import LogOut, SearchBody, SearchResponse
from logflow.auth.deps import require_read
from logflow.backends.store.base import LogStore
from logflow.domain.query import LogFilter, SearchRequest, parse_text_query

# Reads are public only while LOGFLOW_PUBLIC_READ is on (logs are sensitive).
router = APIRouter(prefix="/api/v1/logs", tags=["logs"], dependencies=[Depends(require_read)])


def _fields(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = []
    for raw in values or []:
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise HTTPException(422, f"field: expected key:value, got {raw!r}")
        pairs.append((key, value))
    return tuple(pairs)


def _run(store: LogStore, request: SearchRequest) -> dict[str, object]:
    started = time.perf_counter()
    page = store.search(request)
    return {
        "total": page.total,
        "total_relation": "eq" if page.total_exact else "gte",
        "logs": [event.to_api() for event in page.events],
        "limit": request.limit,
        "offset": request.offset,
        "query_time_ms": round((time.perf_counter() - started) * 1000, 2),
    }


@router.get("/search", response_model=SearchResponse)
async def search(
    runtime: RuntimeDep,
    query: Annotated[str | None, Query(max_length=4096, description='words and "quoted phrases"')] = None,
    service: Annotated[list[str] | None, Query(description="repeat or comma-separate")] = None,
    level: Annotated[list[str] | None, Query(description="repeat or comma-separate")] = None,
    host: Annotated[list[str] | None, Query()] = None,
    field: Annotated[list[str] | None, Query(description="metadata match key:value, repeatable")] = None,
    start_time: Annotated[str | None, Query(description="ISO 8601 or epoch")] = None,
    end_time: Annotated[str | None, Query(description="ISO 8601 or epoch (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    sort: Annotated[str, Query(pattern="^(desc|asc|newest|oldest)$")] = "desc",
) -> Response:
    """Full-text search with filters, newest first. ``total`` stops counting at 10,000 (``gte``)."""
    start_us, end_us = time_window(start_time, end_time)
    flt = LogFilter(
        text=parse_text_query(query), services=tuple(split_multi(service)), levels=parse_levels(level),
        hosts=tuple(split_multi(host)), start_us=start_us, end_us=end_us, fields=_fields(field),
    )
    request = SearchRequest(filter=flt, limit=limit, offset=offset, oldest_first=sort in ("asc", "oldest"))
    return json_response(await run_in_threadpool(_run, runtime.store, request))


@router.post("/search", response_model=SearchResponse)
async def search_post(body: SearchBody, runtime: RuntimeDep) -> Response:
    """The same search with a JSON body (lists of services and levels, attribute ``fields``)."""
    start_us, end_us = time_window(body.start_time, body.end_time)
    flt = LogFilter(
        text=parse_text_query(body.query), services=tuple(body.services), levels=parse_levels(body.levels),
        hosts=tuple(body.hosts), start_us=start_us, end_us=end_us, fields=tuple(body.fields.items()),
    )
    request = SearchRequest(filter=flt, limit=body.limit, offset=body.offset,
                            oldest_first=body.sort in ("asc", "oldest"))
    return json_response(await run_in_threadpool(_run, runtime.store, request))


@router.get("/recent", response_model=SearchResponse)
async def recent(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    """The newest events."""
    request = SearchRequest(filter=LogFilter(), limit=limit)
    return json_response(await run_in_threadpool(_run, runtime.store, request))


@router.get("/{event_id}", response_model=LogOut, responses={404: {"description": "no event with this id"}})
async def get_event(event_id: str, runtime: RuntimeDep) -> Response:
    """One event by id."""
    event = await run_in_threadpool(runtime.store.get, event_id)
    if event is None:
        raise HTTPException(404, f"no event with id {event_id!r}")
    return json_response(event.to_api())
