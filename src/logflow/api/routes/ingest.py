"""``POST /api/v1/ingest``: the native HTTP adapter onto the ingest pipeline."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from logflow.api.deps import RuntimeDep
from logflow.api.routes._json import json_response
from logflow.api.routes._protocol import ingest_body
from logflow.api.schemas import ErrorResponse, IngestResponse
from logflow.auth.deps import IngestAccess
from logflow.ingest.decode import decode_json_items

router = APIRouter(tags=["ingest"])


@router.post(
    "/api/v1/ingest",
    status_code=202,
    responses={
        202: {"model": IngestResponse, "description": "every event accepted and durable"},
        207: {"model": IngestResponse, "description": "some accepted (durable), some rejected"},
        400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
        413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
        422: {"model": IngestResponse, "description": "every event rejected"},
        429: {"model": ErrorResponse, "description": "ingest byte budget of this key spent; see Retry-After"},
        503: {"model": ErrorResponse, "description": "queue full or unavailable; see Retry-After"},
        507: {"model": ErrorResponse, "description": "disk nearly full; see Retry-After"},
    },
)
async def ingest(request: Request, runtime: RuntimeDep, principal: IngestAccess) -> Response:
    """Ingest one JSON object, a JSON array, or NDJSON (``application/x-ndjson``), optionally gzip.

    The answer lists every item: ``accepted`` with its id, or ``rejected`` with a code and reason
    (and the NDJSON line number). A 2xx means the accepted events are durable in the queue.
    Needs an ``ingest`` API key or a user token unless LOGFLOW_INGEST_OPEN is on.
    """
    data = await ingest_body(request, runtime, principal)
    items = decode_json_items(data, request.headers.get("content-type"), runtime.pipeline.limits)
    outcome = await run_in_threadpool(runtime.pipeline.submit, items)
    return json_response(outcome.to_json(), status_code=outcome.http_status)
