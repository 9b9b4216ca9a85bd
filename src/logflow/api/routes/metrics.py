"""Metrics routes, cached with the seed's TTLs and key patterns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool

from logflow.api import metrics_service
from logflow.api.deps import RuntimeDep
from logflow.api.params import MAX_BUCKETS, now_us, parse_duration, parse_interval
from logflow.api.routes._json import raw_json
from logflow.auth.deps import require_read
from logflow.runtime import Runtime

# Reads are public only while LOGFLOW_PUBLIC_READ is on (logs are sensitive).
router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"], dependencies=[Depends(require_read)])

# The seed's cache contract: TTL per endpoint in seconds.
TTL_OVERVIEW = 30
TTL_SERVICE = 60
TTL_SYSTEM = 45
TTL_TIMESERIES = 120
DEFAULT_RANGE = "1h"


def cache_key(base: str, time_range: str) -> str:
    """The seed's key for the default range; other ranges append ``:{time_range}``."""
    return base if time_range == DEFAULT_RANGE else f"{base}:{time_range}"


async def _cached(runtime: Runtime, key: str, ttl: int, compute: Callable[[], dict[str, Any]]) -> Response:
    hit = await run_in_threadpool(runtime.cache.get, key)
    if hit is not None:
        return raw_json(hit, headers={"X-Cache": "HIT"})
    body = orjson.dumps(await run_in_threadpool(compute))
    await run_in_threadpool(runtime.cache.set, key, body, ttl)
    return raw_json(body, headers={"X-Cache": "MISS"})


def _max_range(runtime: Runtime) -> int:
    return runtime.settings.retention_days * 86400


TimeRange = Annotated[str, Query(description="e.g. 15m, 1h, 24h, 7d")]


@router.get("/overview")
async def overview(runtime: RuntimeDep, time_range: TimeRange = DEFAULT_RANGE) -> Response:
    """Totals, per level and per service, logs per minute and error rate (% ERROR+CRITICAL)."""
    range_s = parse_duration(time_range, name="time_range", max_s=_max_range(runtime))
    return await _cached(runtime, cache_key("metrics:overview", time_range), TTL_OVERVIEW,
                         lambda: metrics_service.overview(runtime.store, time_range=time_range, range_s=range_s,
                                                          now_us=now_us()))


@router.get("/service/{service_name}")
async def service(service_name: str, runtime: RuntimeDep, time_range: TimeRange = DEFAULT_RANGE) -> Response:
    """One service: totals, per level, error rate and its most frequent error messages."""
    range_s = parse_duration(time_range, name="time_range", max_s=_max_range(runtime))
    return await _cached(runtime, cache_key(f"metrics:service:{service_name}", time_range), TTL_SERVICE,
                         lambda: metrics_service.service(runtime.store, service_name, time_range=time_range,
                                                         range_s=range_s, now_us=now_us()))


@router.get("/system")
async def system(runtime: RuntimeDep, time_range: TimeRange = DEFAULT_RANGE) -> Response:
    """Every service side by side, overall per level, logs per second."""
    range_s = parse_duration(time_range, name="time_range", max_s=_max_range(runtime))
    return await _cached(runtime, cache_key("metrics:system", time_range), TTL_SYSTEM,
                         lambda: metrics_service.system(runtime.store, time_range=time_range, range_s=range_s,
                                                        now_us=now_us()))


@router.get("/timeseries")
async def timeseries(
    runtime: RuntimeDep,
    interval: Annotated[str, Query(description="1m 5m 10m 15m 30m 1h 3h 6h 12h 1d")] = "5m",
    service: Annotated[str | None, Query()] = None,
    time_range: TimeRange = "24h",
) -> Response:
    """Counts per interval (every bucket present, by level) over ``time_range``."""
    interval_s = parse_interval(interval)
    range_s = parse_duration(time_range, name="time_range", max_s=_max_range(runtime))
    if range_s // interval_s > MAX_BUCKETS:
        raise HTTPException(422, f"time_range/interval gives more than {MAX_BUCKETS} points; use a larger interval")
    key = f"metrics:timeseries:{interval}:{service or 'all'}"
    key = key if time_range == "24h" else f"{key}:{time_range}"
    return await _cached(runtime, key, TTL_TIMESERIES,
                         lambda: metrics_service.timeseries(runtime.store, interval=interval, interval_s=interval_s,
                                                            time_range=time_range, range_s=range_s,
                                                            service_name=service, now_us=now_us()))
