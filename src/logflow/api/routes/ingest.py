"""``POST /api/v1/ingest``: the native HTTP adapter onto the ingest pipeline."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from logflow.api.deps import RuntimeDep
from logflow.api.routes._json import json_response
from logflow.api.schemas import ErrorResponse, IngestResponse
from logflow.auth.deps import IngestAccess, charge_ingest_bytes
from logflow.ingest.decode import BodyError, decode_json_items, decompress

router = APIRouter(tags=["ingest"])


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing (413) as soon as it exceeds ``max_bytes`` instead of buffering it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BodyError(413, f"body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, f"body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
    limits = runtime.pipeline.limits
    body = await read_body(request, limits.max_body_bytes)
    await run_in_threadpool(charge_ingest_bytes, request, principal, len(body))
    data = decompress(body, request.headers.get("content-encoding"), limits.max_body_bytes)
    items = decode_json_items(data, request.headers.get("content-type"), limits)
    outcome = await run_in_threadpool(runtime.pipeline.submit, items)
    return json_response(outcome.to_json(), status_code=outcome.http_status)
