"""``POST /gelf``: GELF over HTTP, Graylog's path, onto the one ingest pipeline.

One GELF JSON object per request (or several, one per line, as Graylog's bulk mode takes them),
plain or gzip/zlib-compressed: the magic bytes decide, since graypy and pygelf send zlib labelled
``Content-Encoding: gzip,deflate``. Graylog answers 202 with an empty body; so does LogFlow when
every message was accepted. Bad input is a 400 with the reason.

Those two clients also close the connection right after sending, without reading the answer;
``logflow.api.http_protocol.half_close_tolerant_http()`` is the uvicorn protocol that still serves
such a request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from logflow.api.deps import RuntimeDep
from logflow.api.routes._json import json_response
from logflow.api.routes._protocol import ingest_body
from logflow.api.schemas import ErrorResponse
from logflow.auth.deps import IngestAccess
from logflow.ingest.decode import BodyError
from logflow.ingest.protocols.gelf import GelfError, gelf_http_items

router = APIRouter(tags=["ingest"])

_KNOWN_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


@router.post(
    "/gelf",
    status_code=202,
    responses={
        202: {"description": "accepted and durable (empty body, as Graylog answers); with several messages of "
                             "which some were rejected, a JSON body lists them"},
        400: {"model": ErrorResponse, "description": "not GELF (bad JSON or compression, no short_message) or "
                                                     "refused by validation"},
        401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
        415: {"model": ErrorResponse},
        429: {"model": ErrorResponse, "description": "ingest byte budget of this key spent; see Retry-After"},
        503: {"model": ErrorResponse, "description": "queue full or unavailable; see Retry-After"},
        507: {"model": ErrorResponse, "description": "disk nearly full; see Retry-After"},
    },
)
async def gelf(request: Request, runtime: RuntimeDep, principal: IngestAccess) -> Response:
    """Ingest GELF 1.1 messages as Graylog's GELF HTTP input does (needs an ``ingest`` API key)."""
    limits = runtime.pipeline.limits
    try:
        # Not decoded here: GELF goes by magic bytes, not by the (often wrong) Content-Encoding.
        body = await ingest_body(request, runtime, principal, decode=False)
    except ClientDisconnect:  # gone before its body arrived: there is nobody to answer
        return Response(status_code=400)
    encodings = {part.strip().lower() for part in request.headers.get("content-encoding", "").split(",")}
    unknown = sorted(encodings - _KNOWN_ENCODINGS)
    if unknown:
        raise BodyError(415, f"unsupported Content-Encoding {', '.join(unknown)}; send gzip, deflate or plain JSON")
    try:
        items = gelf_http_items(body, max_body_bytes=limits.max_body_bytes, max_event_bytes=limits.max_event_bytes)
    except GelfError as exc:
        raise BodyError(400, str(exc)) from None
    if len(items) > limits.max_batch_events:
        raise BodyError(413, f"{len(items)} messages in one request; the limit is {limits.max_batch_events}")
    outcome = await run_in_threadpool(runtime.pipeline.submit, items)
    if outcome.rejected == 0:
        return Response(status_code=202)
    errors = [{"index": r.index, "error": r.error} for r in outcome.results if r.status == "rejected"]
    if outcome.accepted == 0:
        reasons = "; ".join(str(e["error"]) for e in errors[:5])
        return json_response({"detail": reasons, "errors": errors}, status_code=400)
    return json_response({"accepted": outcome.accepted, "rejected": outcome.rejected, "errors": errors},
                         status_code=202)


