"""The seed's metrics answers, computed from the store's aggregation primitives (any store)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from logflow.backends.store.base import GroupCount, LogStore
from logflow.domain.events import format_timestamp
from logflow.domain.levels import ERROR_LEVELS, Level
from logflow.domain.query import LogFilter

_LEVEL_NAMES = tuple(level.name for level in Level)


def _zero_levels() -> dict[str, int]:
    return dict.fromkeys(_LEVEL_NAMES, 0)


def _error_rate(by_level: dict[str, int], total: int) -> float:
    errors = sum(by_level[level.name] for level in ERROR_LEVELS)
    return round(100.0 * errors / total, 2) if total else 0.0


def _summaries(groups: list[GroupCount]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    overall = _zero_levels()
    per_service: dict[str, dict[str, int]] = {}
    for group in groups:
        overall[group.level.name] += group.count
        per_service.setdefault(group.service, _zero_levels())[group.level.name] += group.count
    return overall, per_service


def overview(store: LogStore, *, time_range: str, range_s: int, now_us: int) -> dict[str, Any]:
    groups = store.counts_by_service_level(LogFilter(start_us=now_us - range_s * 1_000_000, end_us=now_us))
    by_level, per_service = _summaries(groups)
    total = sum(by_level.values())
    by_service = dict(sorted(((s, sum(lv.values())) for s, lv in per_service.items()), key=lambda kv: -kv[1]))
    return {
        "time_range": time_range,
        "total_logs": total,
        "logs_per_minute": round(total / (range_s / 60), 2),
        "by_level": by_level,
        "by_service": by_service,
        "error_rate": _error_rate(by_level, total),
    }


def service(store: LogStore, name: str, *, time_range: str, range_s: int, now_us: int) -> dict[str, Any]:
    flt = LogFilter(services=(name,), start_us=now_us - range_s * 1_000_000, end_us=now_us)
    by_level, _ = _summaries(store.counts_by_service_level(flt))
    total = sum(by_level.values())
    errors = LogFilter(services=(name,), levels=tuple(ERROR_LEVELS), start_us=flt.start_us, end_us=flt.end_us)
    top = store.top_messages(errors, 10) if total else []
    return {
        "service": name,
        "time_range": time_range,
        "total_logs": total,
        "logs_per_minute": round(total / (range_s / 60), 2),
        "by_level": by_level,
        "error_rate": _error_rate(by_level, total),
        "top_errors": [
            {
                "message": m.message,
                "count": m.count,
                "service": m.service,
                "last_seen": format_timestamp(m.last_seen_us),
            }
            for m in top
        ],
    }


def system(store: LogStore, *, time_range: str, range_s: int, now_us: int) -> dict[str, Any]:
    groups = store.counts_by_service_level(LogFilter(start_us=now_us - range_s * 1_000_000, end_us=now_us))
    overall, per_service = _summaries(groups)
    total = sum(overall.values())
    return {
        "timestamp": datetime.fromtimestamp(now_us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z"),
        "time_range": time_range,
        "total_logs": total,
        "total_services": len(per_service),
        "logs_per_second": round(total / range_s, 3),
        "overall_by_level": overall,
        "metrics_by_service": {
            name: {
                "total_logs": sum(levels.values()),
                "by_level": levels,
                "error_rate": _error_rate(levels, sum(levels.values())),
            }
            for name, levels in sorted(per_service.items())
        },
    }


def timeseries(
    store: LogStore,
    *,
    interval: str,
    interval_s: int,
    time_range: str,
    range_s: int,
    service_name: str | None,
    now_us: int,
) -> dict[str, Any]:
    step = interval_s * 1_000_000
    start = now_us - range_s * 1_000_000
    flt = LogFilter(services=(service_name,) if service_name else (), start_us=start, end_us=now_us)
    buckets: dict[int, dict[str, int]] = {}
    # Every bucket is present, empty ones with zero counts, so a chart needs no gap filling.
    for bucket_start in range(start // step * step, now_us, step):
        buckets[bucket_start] = _zero_levels()
    for bucket in store.histogram(flt, interval_s):
        levels = buckets.get(bucket.start_us)
        if levels is None:
            levels = buckets[bucket.start_us] = _zero_levels()
        levels[_LEVEL_NAMES[bucket.level]] += bucket.count
    data = [
        {"timestamp": format_timestamp(ts), "count": sum(levels.values()), "by_level": levels}
        for ts, levels in sorted(buckets.items())
    ]
    return {
        "interval": interval,
        "time_range": time_range,
        "service": service_name,
        "data": data,
        "total_points": len(data),
    }
