"""What every HTTP ingest adapter shares: reading the body within the limits, and answering in its protocol's shape.

``ingest_body`` is the one body path of all ingest routes (native, ``_bulk``, OTLP, Loki, GELF):
read up to the body limit, charge the principal's ingest byte budget, undo Content-Encoding.
``answering_route`` makes a route class whose errors (bad body, auth, a full queue...) are turned
into the protocol's own answer by one mapping function per protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from logflow.auth.deps import charge_ingest_bytes
from logflow.auth.principal import Principal
from logflow.ingest.decode import BodyError, decompress
from logflow.runtime import Runtime

ErrorAnswer = Callable[[Request, Exception], Response | None]


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


async def ingest_body(request: Request, runtime: Runtime, principal: Principal, *, decode: bool = True) -> bytes:
    """An ingest request's body: read within the body limit, charged to the principal's byte budget,
    then with its Content-Encoding undone (``decode=False``: the protocol decodes it itself)."""
    limits = runtime.pipeline.limits
    body = await read_body(request, limits.max_body_bytes)
    await run_in_threadpool(charge_ingest_bytes, request, principal, len(body))
    if not decode:
        return body
    return decompress(body, request.headers.get("content-encoding"), limits.max_body_bytes)


def answering_route(to_answer: ErrorAnswer, *, success_headers: dict[str, str] | None = None) -> type[APIRoute]:
    """A route class whose exceptions ``to_answer`` maps to a response (None: raised as before).

    ``success_headers`` are added to every successful answer too (Elasticsearch's product header).
    """

    class AnsweringRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answering_handler(request: Request) -> Response:
                try:
                    response = await handler(request)
                except Exception as exc:  # re-raised below unless it maps to the protocol's answer
                    mapped = to_answer(request, exc)
                    if mapped is None:
                        raise
                    return mapped
                if success_headers:
                    response.headers.update(success_headers)
                return response

            return answering_handler

    return AnsweringRoute
