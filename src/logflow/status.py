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


def pipeline_status(runtime: Runtime) -> dict[str, Any]:
    queue = runtime.queue.stats(runtime.settings.processor_group)
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
        },
        "processors": processor_reports(runtime),
        "store": asdict(store),
        "ingest": asdict(runtime.pipeline.counters),
    }
