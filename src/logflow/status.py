"""Pipeline status shared by ``logflow status`` and ``GET /api/v1/pipeline/status``."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import orjson

from logflow.runtime import Runtime

PROCESSOR_STATUS_FILE = "processor-status.json"
STALE_AFTER_S = 10.0


def processor_reports(runtime: Runtime) -> list[dict[str, Any]]:
    """Status files written by processors sharing this data directory (embedded shape)."""
    reports = []
    for path in sorted(runtime.settings.data_dir.glob("processor-status*.json")):
        try:
            report = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        report["stale"] = time.time() - float(report.get("updated_at", 0)) > STALE_AFTER_S
        reports.append(report)
    return reports


def pipeline_status(runtime: Runtime, sample_s: float = 0.0) -> dict[str, Any]:
    """Queue lag, processors, store and ingest counters.

    With ``sample_s`` the queue is read twice that far apart and ``consumed_per_s`` is the rate at
    which the group's committed offsets advanced: processor throughput as the queue sees it, for
    any number of processors on any machines (Kafka offsets count messages, each a pack of one
    service's events from one ingest request; the embedded queue's count bytes).
    """
    group = runtime.settings.processor_group
    queue = runtime.queue.stats(group)
    consumed: float | None = None
    if sample_s > 0:
        before = sum(p.committed for p in queue.partitions)
        started = time.monotonic()
        time.sleep(sample_s)
        queue = runtime.queue.stats(group)
        consumed = round((sum(p.committed for p in queue.partitions) - before) / (time.monotonic() - started), 1)
    store = runtime.store.stats()
    return {
        "queue": {
            "kind": queue.kind,
            "healthy": queue.healthy,
            "detail": queue.detail,
            "group": runtime.settings.processor_group,
            "partitions": [{**asdict(p), "lag": p.lag} for p in queue.partitions],
            "total_lag": sum(p.lag for p in queue.partitions),
            "backlog_bytes": queue.backlog_bytes,
            "dead_letters": queue.dead_letters,
            "consumed_per_s": consumed,
            "offset_unit": "bytes" if queue.kind == "embedded" else "messages",
        },
        "processors": processor_reports(runtime),
        "store": asdict(store),
        "ingest": asdict(runtime.pipeline.counters),
    }
