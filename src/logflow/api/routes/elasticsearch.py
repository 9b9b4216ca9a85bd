"""Elasticsearch-compatible endpoints: ``_bulk`` ingest plus the probes shippers make first.

Every answer here is in Elasticsearch's shape and carries ``X-Elastic-Product: Elasticsearch``
(official clients refuse a server without it), including errors: a route class converts LogFlow's
exceptions (bad body, auth, rate limits, a full queue) into ES error documents, so a shipper sees
the status codes it knows how to act on (429 + Retry-After means "retry later").

Auth: ``_bulk`` and the no-op management writes need an ingest credential (Basic with the API key
as password, ``ApiKey``, Bearer or X-API-Key). The read-only probes answer without credentials,
as LogFlow's own ``/`` and ``/health`` do, but wrong credentials are a 401 there too, so a
misconfigured shipper fails at its connection check rather than at its first batch.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from logflow.api.deps import get_runtime
from logflow.api.routes._json import json_response
from logflow.api.routes._protocol import answering_route, ingest_body, read_body
from logflow.api.routes.system import health_report
from logflow.auth.deps import require_ingest, resolve_principal
from logflow.auth.errors import AuthError
from logflow.auth.principal import Principal
from logflow.backends.errors import BackendUnavailable, QueueFull, StorageFull
from logflow.ingest.decode import BodyError
from logflow.ingest.protocols import elasticsearch as es


def es_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with the product header every ES client checks."""
    return json_response(body, status_code=status, headers={**es.PRODUCT_HEADERS, **(headers or {})})


def es_error(status: int, type_: str, reason: str, retry_after: int | None = None) -> Response:
    """An ES error document; 401s carry ES's authentication challenges."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    response = es_response(es.error_body(status, type_, reason), status, headers)
    if status == 401:
        for challenge in es.CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
    return response


def _as_es_error(_: Request, exc: Exception) -> Response | None:
    """The ES answer for an exception raised by a route or its dependencies (None: not ours to map)."""
    if isinstance(exc, BodyError):
        return es_error(exc.code, es.body_error_type(exc.code), exc.reason)
    if isinstance(exc, QueueFull):
        return es_error(429, "es_rejected_execution_exception", f"queue is full: {exc}", exc.retry_after_s)
    if isinstance(exc, StorageFull):
        # ES answers a flood-stage disk block with 429 too, which shippers retry.
        return es_error(429, "cluster_block_exception", f"insufficient storage: {exc}", exc.retry_after_s)
    if isinstance(exc, BackendUnavailable):
        return es_error(503, "unavailable_shards_exception", f"backend unavailable: {exc}", 5)
    if isinstance(exc, AuthError):
        type_ = "es_rejected_execution_exception" if exc.status == 429 else "security_exception"
        return es_error(exc.status, type_, exc.detail, exc.retry_after)
    if isinstance(exc, HTTPException):
        type_ = "security_exception" if exc.status_code in (401, 403) else "illegal_argument_exception"
        return es_error(exc.status_code, type_, str(exc.detail))
    if isinstance(exc, RequestValidationError):
        return es_error(400, "illegal_argument_exception", "; ".join(str(e.get("msg")) for e in exc.errors()))
    return None


# Every answer, errors included, is Elasticsearch-shaped and carries its product header.
router = APIRouter(tags=["elasticsearch"],
                   route_class=answering_route(_as_es_error, success_headers=es.PRODUCT_HEADERS))


async def probe_access(request: Request) -> Principal:
    """Anonymous or any valid principal; wrong credentials are a 401 (raised as HTTPException)."""
    return await resolve_principal(request)


async def ingest_access(request: Request) -> Principal:
    """An ingest credential (401 without one, 403 for a key without the ingest scope)."""
    return await require_ingest(request, await resolve_principal(request))


# -- _bulk ----------------------------------------------------------------------------------------
async def _bulk(request: Request, default_index: str | None) -> Response:
    started = time.monotonic()
    principal = await ingest_access(request)
    runtime = get_runtime(request)
    data = await ingest_body(request, runtime, principal)
    items = es.parse_bulk(data, default_index, runtime.pipeline.limits)
    batch = es.submitted(items)
    outcome = await run_in_threadpool(runtime.pipeline.submit, batch) if batch else None
    took = int((time.monotonic() - started) * 1000)
    # 200 even when items failed, as Elasticsearch does: the per-item statuses say what to retry.
    return es_response(es.bulk_response(items, outcome, took))


@router.post("/_bulk")
async def bulk(request: Request) -> Response:
    """Elasticsearch bulk API: NDJSON action/source pairs (``index``/``create``), optionally gzip.

    Answers ES's bulk response (``took``, ``errors``, ``items``) with status 200 even when items
    failed; 429 + Retry-After when the queue is full. See docs/protocols/elasticsearch.md.
    """
    return await _bulk(request, None)


@router.post("/{index}/_bulk")
async def bulk_index(index: str, request: Request) -> Response:
    """As ``POST /_bulk``, with ``index`` as the default ``_index`` of actions that name none."""
    return await _bulk(request, index)


@router.put("/_bulk", include_in_schema=False)
async def bulk_put(request: Request) -> Response:
    return await _bulk(request, None)


@router.put("/{index}/_bulk", include_in_schema=False)
async def bulk_index_put(index: str, request: Request) -> Response:
    return await _bulk(request, index)


# -- probes ---------------------------------------------------------------------------------------
_HEALTH_COLOURS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}


async def _colour(request: Request) -> str:
    _, report = await run_in_threadpool(health_report, get_runtime(request))
    return _HEALTH_COLOURS.get(str(report["status"]), "red")


@router.api_route("/_cluster/health", methods=["GET", "HEAD"], include_in_schema=False)
@router.api_route("/_cluster/health/{index}", methods=["GET", "HEAD"], include_in_schema=False)
async def cluster_health(request: Request) -> Response:
    """Vector's health check. The colour is LogFlow's own health (green, yellow: cache down, red)."""
    await probe_access(request)
    colour = await _colour(request)
    return es_response({
        "cluster_name": es.CLUSTER_NAME, "status": colour, "timed_out": False,
        "number_of_nodes": 1, "number_of_data_nodes": 1,
        "active_primary_shards": 0, "active_shards": 0, "relocating_shards": 0, "initializing_shards": 0,
        "unassigned_shards": 0, "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0 if colour != "red" else 0.0,
    })


@router.api_route("/_cat/health", methods=["GET", "HEAD"], include_in_schema=False)
async def cat_health(request: Request) -> Response:
    """rsyslog's ``omelasticsearch`` health check; text by default, JSON with ``?format=json``."""
    await probe_access(request)
    colour = await _colour(request)
    now = time.time()
    row = {"epoch": str(int(now)), "timestamp": time.strftime("%H:%M:%S", time.gmtime(now)),
           "cluster": es.CLUSTER_NAME, "status": colour, "node.total": "1", "node.data": "1"}
    if request.query_params.get("format") == "json":
        return es_response([row])
    text = " ".join(row.values()) + "\n"
    if "v" in request.query_params:
        text = " ".join(row) + "\n" + text
    return Response(text, media_type="text/plain; charset=UTF-8", headers=es.PRODUCT_HEADERS)


@router.get("/_license", include_in_schema=False)
async def license_(request: Request) -> Response:
    """Beats' license check (they refuse the OSS distribution): an active basic license."""
    await probe_access(request)
    return es_response(es.license_body(es.deployment_uuid(get_runtime(request).settings)))


@router.get("/_xpack", include_in_schema=False)
async def xpack(request: Request) -> Response:
    """Beats 7.x license and feature check."""
    await probe_access(request)
    return es_response(es.xpack_body(es.deployment_uuid(get_runtime(request).settings)))


# -- no-op management calls Filebeat makes during its default setup ---------------------------------
_MANAGED = ("/_index_template/{name}", "/_template/{name}", "/_component_template/{name}",
            "/_ilm/policy/{name}", "/_data_stream/{name}")


async def _missing(name: str, request: Request) -> Response:
    """Nothing is kept, so a lookup says so (404); the shipper then PUTs, which is acknowledged."""
    await probe_access(request)
    return es_error(404, "resource_not_found_exception", f"[{name}] not found: LogFlow keeps no templates, "
                    "policies or data streams (PUT is accepted and ignored)")


async def _acknowledge(name: str, request: Request) -> Response:
    """Accepted and ignored: LogFlow's mapping and retention are its own (LOGFLOW_RETENTION_DAYS)."""
    await ingest_access(request)
    await read_body(request, get_runtime(request).pipeline.limits.max_body_bytes)
    return es_response({"acknowledged": True})


for _path in _MANAGED:
    router.add_api_route(_path, _missing, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_api_route(_path, _acknowledge, methods=["PUT"], include_in_schema=False)
