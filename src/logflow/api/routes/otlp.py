"""``POST /v1/logs``: OpenTelemetry OTLP/HTTP logs (protobuf, the SDK exporters' default, or JSON).

Answers follow the OTLP/HTTP specification in the request's own encoding: 200 with an
``ExportLogsServiceResponse`` (``partial_success`` when records were rejected), and on failure a
``google.rpc.Status`` body: 400 for an undecodable body (not retried by exporters), 415 for an
unknown Content-Type, 401/403 for credentials, and the retryable 429/503 with ``Retry-After``
when LogFlow's rate limit, queue or disk asks the exporter to come back later.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from logflow.api.deps import get_runtime
from logflow.api.routes._protocol import answering_route, ingest_body
from logflow.auth.deps import IngestAccess
from logflow.auth.errors import AuthError
from logflow.backends.errors import BackendUnavailable, QueueFull, StorageFull
from logflow.ingest.decode import BodyError
from logflow.ingest.protocols import otlp


def _reply_media(request: Request) -> str:
    """Errors are encoded like the request; anything that is not JSON gets protobuf."""
    return otlp.media_type(request.headers.get("content-type")) or otlp.PROTOBUF


def status_response(request: Request, status: int, message: str, retry_after: int | None = None) -> Response:
    media = _reply_media(request)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return Response(otlp.status_body(status, message, media), status_code=status, media_type=media, headers=headers)


def _as_status(request: Request, exc: Exception) -> Response | None:
    """The OTLP answer for an exception from the route or its dependencies (None: not ours)."""
    if isinstance(exc, BodyError):
        return status_response(request, exc.code, exc.reason)
    # 429/502/503/504 are the statuses OTLP exporters retry, so every "come back later" is one.
    if isinstance(exc, QueueFull):
        return status_response(request, 503, f"queue is full: {exc}", exc.retry_after_s)
    if isinstance(exc, StorageFull):
        return status_response(request, 503, f"insufficient storage: {exc}", exc.retry_after_s)
    if isinstance(exc, BackendUnavailable):
        return status_response(request, 503, f"backend unavailable: {exc}", 5)
    if isinstance(exc, AuthError):
        response = status_response(request, exc.status, exc.detail, exc.retry_after)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if isinstance(exc, HTTPException):
        response = status_response(request, exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response
    return None


# Every answer, errors included, is an OTLP/HTTP response in the request's encoding.
router = APIRouter(tags=["opentelemetry"], route_class=answering_route(_as_status))


@router.post(
    "/v1/logs",
    responses={
        200: {"description": "ExportLogsServiceResponse (with partial_success when records were rejected)"},
        400: {"description": "google.rpc.Status: the body is not an ExportLogsServiceRequest"},
        415: {"description": "google.rpc.Status: Content-Type is not application/x-protobuf or application/json"},
        429: {"description": "google.rpc.Status: ingest rate limit; see Retry-After"},
        503: {"description": "google.rpc.Status: queue full, disk nearly full or backend down; see Retry-After"},
    },
)
async def export_logs(request: Request, principal: IngestAccess) -> Response:
    """OTLP/HTTP logs export: ``application/x-protobuf`` or ``application/json`` (OTLP/JSON), optionally gzip.

    Every LogRecord becomes one event (mapping in docs/protocols/otlp.md). A 200 means the
    accepted records are durable; rejected ones are counted in ``partial_success``.
    """
    media = otlp.media_type(request.headers.get("content-type"))
    if media is None:
        raise BodyError(415, f"unsupported Content-Type {request.headers.get('content-type')!r}; "
                             f"OTLP/HTTP uses {otlp.PROTOBUF} or {otlp.JSON}")
    runtime = get_runtime(request)
    limits = runtime.pipeline.limits
    data = await ingest_body(request, runtime, principal)
    # Decoding a large protobuf request is CPU work: keep it off the event loop.
    export, pre_errors = await run_in_threadpool(otlp.parse_request, data, media)
    items, where = await run_in_threadpool(otlp.to_items, export, pre_errors, limits)
    outcome = await run_in_threadpool(runtime.pipeline.submit, items) if items else None
    return Response(otlp.export_response(outcome, where, media), status_code=200, media_type=media)
