"""The ceiling for the distributed path: OpenSearch's own ``_bulk`` throughput from a plain client.

The same dataset, normalized and mapped exactly as LogFlow stores it, is turned into ``_bulk``
bodies before the clock starts; then two HTTP clients (one per core) post them to OpenSearch.
"""

from __future__ import annotations

import time
import uuid

import httpx
import orjson

from logflow.backends.store.opensearch.client import parse_store_url
from logflow.backends.store.opensearch.mapping import index_name, index_template, pattern, template_name, to_document
from logflow.bench.workers import in_parallel
from logflow.domain.events import LogEvent
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import normalize

DAY_US = 86_400_000_000


def bulk_ceiling(store_url: str, bodies: list[bytes], concurrency: int = 2) -> tuple[float, int]:
    """(events/s, events) for posting the dataset straight to ``_bulk``; cleans up after itself."""
    endpoint = parse_store_url(store_url)
    prefix = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    now = time.time_ns() // 1000
    limits = IngestLimits()
    requests: list[bytes] = []
    events = 0
    for body in bodies:
        lines: list[bytes] = []
        for raw in body.splitlines():
            event = normalize(orjson.loads(raw), now_us=now, limits=limits)
            if not isinstance(event, LogEvent):
                continue
            action = {"create": {"_index": index_name(prefix, event.timestamp // DAY_US), "_id": event.id}}
            lines += [orjson.dumps(action), orjson.dumps(to_document(event))]
            events += 1
        requests.append(b"\n".join(lines) + b"\n")
    with httpx.Client(base_url=endpoint.base_url, auth=endpoint.auth, timeout=120) as client:
        client.put(f"/_index_template/{template_name(prefix)}",
                   json=index_template(prefix, shards=1, replicas=0)).raise_for_status()
        errors: list[str] = []

        def send(own: httpx.Client, index: int) -> None:
            resp = own.post("/_bulk", content=requests[index], headers={"Content-Type": "application/x-ndjson"})
            if resp.status_code != 200 or resp.json().get("errors"):
                errors.append(resp.text[:300])

        started = time.perf_counter()
        in_parallel(len(requests), concurrency,
                    lambda: httpx.Client(base_url=endpoint.base_url, auth=endpoint.auth, timeout=120), send)
        elapsed = time.perf_counter() - started
        client.delete(f"/{pattern(prefix)}")
        client.delete(f"/_index_template/{template_name(prefix)}")
    if errors:
        raise RuntimeError(f"_bulk failed: {errors[0]}")
    return events / elapsed, events
