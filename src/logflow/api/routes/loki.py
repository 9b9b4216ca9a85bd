"""``POST /loki/api/v1/push``: the Grafana Loki push API (Promtail, Grafana Agent/Alloy, Vector,
Fluent Bit's loki output, logging libraries).

Answers as Loki does, in plain text: 204 when every entry was stored; 400 with the reasons when
the body is malformed or when some entries were refused. Like Loki (for example with entries that
are too old), the valid entries of a push that gets a 400 ARE stored: the 400 lists only the
refused ones, and clients do not retry a 400. 429 with Retry-After when the queue or disk asks the
client to slow down (Loki's clients retry 429 and 5xx with backoff).
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
from logflow.ingest.protocols import loki


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(text if text.endswith("\n") else text + "\n", status_code=status,
                    media_type="text/plain; charset=utf-8", headers=headers)


def _as_text(_: Request, exc: Exception) -> Response | None:
    """Loki's plain-text answer for an exception from the route or its dependencies (None: not ours)."""
    if isinstance(exc, BodyError):
        return text_response(exc.code, exc.reason)
    if isinstance(exc, QueueFull | StorageFull):
        what = "queue is full" if isinstance(exc, QueueFull) else "insufficient storage"
        return text_response(429, f"{what}: {exc}", {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, BackendUnavailable):
        return text_response(503, f"backend unavailable: {exc}", {"Retry-After": "5"})
    if isinstance(exc, AuthError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="logflow"'
        return text_response(exc.status, exc.detail, headers)
    if isinstance(exc, HTTPException):
        # Promtail and Grafana Agent use Basic auth: challenge for it on a 401.
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = 'Basic realm="logflow"'
        return text_response(exc.status_code, str(exc.detail), headers)
    return None


# Every answer, errors included, is Loki-style plain text.
router = APIRouter(tags=["loki"], route_class=answering_route(_as_text))


@router.post(
    "/loki/api/v1/push",
    status_code=204,
    responses={
        204: {"description": "every entry stored (durable)"},
        400: {"description": "text: malformed body, or the entries that were refused (the others are stored)"},
        413: {"description": "text: body or decompressed body too large"},
        429: {"description": "text: queue full, disk nearly full or rate limit; see Retry-After"},
        503: {"description": "text: backend unavailable; see Retry-After"},
    },
)
async def push(request: Request, principal: IngestAccess) -> Response:
    """Loki push: snappy-compressed protobuf ``PushRequest`` (default) or JSON, optionally gzip.

    Stream labels map to service/level/host, the rest stay attributes; see docs/protocols/loki.md.
    """
    runtime = get_runtime(request)
    limits = runtime.pipeline.limits
    # snappy (the protobuf default) is undone by the parser, which knows the block format.
    snappy = (request.headers.get("content-encoding") or "").strip().lower() == "snappy"
    data = await ingest_body(request, runtime, principal, decode=not snappy)
    batch = await run_in_threadpool(loki.parse_push, data, request.headers.get("content-type"), snappy, limits)
    rejected: list[tuple[int, str]] = []
    if batch.items:
        outcome = await run_in_threadpool(runtime.pipeline.submit, batch.items)
        rejected = [(r.index, r.error or "rejected") for r in outcome.results if r.status != "accepted"]
    if rejected or batch.stream_errors:
        return text_response(400, loki.rejection_text(batch, rejected))
    return Response(status_code=204)
