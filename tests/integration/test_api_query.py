"""Search, metrics, cache, health and parameter validation over HTTP, on both shapes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import LogFlow

HOUR_US = 3_600_000_000


def seed(logflow: LogFlow) -> dict[str, Any]:
    """A known dataset: 3 services × levels at known times in the last hour and 3 hours ago."""
    now = time.time_ns() // 1000
    events = []
    for i in range(60):
        events.append(
            {
                "timestamp": now - (i + 1) * 30_000_000,
                "service": "alpha",
                "level": "INFO",
                "message": f"request {i} completed in {i} ms",
                "metadata": {"route": "/pay" if i % 2 else "/buy"},
            }
        )
    for i in range(12):
        events.append(
            {
                "timestamp": now - (i + 1) * 60_000_000,
                "service": "beta",
                "level": "ERROR",
                "message": "database timeout after 30000 ms" if i < 8 else f"disk full on node {i}",
            }
        )
    for i in range(5):
        events.append(
            {
                "timestamp": now - 3 * HOUR_US - i * 1_000_000,
                "service": "gamma",
                "level": "WARN",
                "message": f"slow response {i}",
            }
        )
    resp = logflow.ingest(events)
    assert resp.status_code == 202, resp.text[:300]
    logflow.settle()
    return {"now": now}


def test_search_filters_sort_and_pagination(logflow: LogFlow) -> None:
    seed(logflow)
    get = logflow.client.get
    page = get("/api/v1/logs/search", params={"query": "completed", "limit": 10}).json()
    assert page["total"] == 60 and page["total_relation"] == "eq" and len(page["logs"]) == 10
    stamps = [log["timestamp"] for log in page["logs"]]
    assert stamps == sorted(stamps, reverse=True)
    assert page["logs"][0]["message"] == "request 0 completed in 0 ms"
    second = get("/api/v1/logs/search", params={"query": "completed", "limit": 10, "offset": 10}).json()
    assert second["logs"][0]["message"] == "request 10 completed in 10 ms"
    oldest = get("/api/v1/logs/search", params={"query": "completed", "limit": 1, "sort": "asc"}).json()
    assert oldest["logs"][0]["message"] == "request 59 completed in 59 ms"
    assert get("/api/v1/logs/search", params={"service": "beta", "level": "ERROR"}).json()["total"] == 12
    assert get("/api/v1/logs/search", params={"service": "beta,gamma"}).json()["total"] == 17
    assert get("/api/v1/logs/search", params={"query": '"database timeout"'}).json()["total"] == 8
    assert get("/api/v1/logs/search", params={"query": '"timeout database"'}).json()["total"] == 0
    assert get("/api/v1/logs/search", params={"query": "DATABASE Timeout"}).json()["total"] == 8
    assert get("/api/v1/logs/search", params={"field": "route:/pay"}).json()["total"] == 30
    recent_hour = {"start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))}
    assert get("/api/v1/logs/search", params=recent_hour).json()["total"] == 72
    body = {"query": "slow", "services": ["gamma"], "levels": ["warning"], "limit": 2, "sort": "oldest"}
    posted = logflow.client.post("/api/v1/logs/search", json=body).json()
    assert posted["total"] == 5 and [log["message"] for log in posted["logs"]] == ["slow response 4", "slow response 3"]
    recent = get("/api/v1/logs/recent", params={"limit": 3}).json()
    assert next(log["message"] for log in recent["logs"]) == "request 0 completed in 0 ms"


def test_metrics_have_exact_counts(logflow: LogFlow) -> None:
    seed(logflow)
    get = logflow.client.get
    overview = get("/api/v1/metrics/overview", params={"time_range": "1h"}).json()
    assert overview["total_logs"] == 72
    assert overview["by_level"]["INFO"] == 60 and overview["by_level"]["ERROR"] == 12
    assert overview["by_service"] == {"alpha": 60, "beta": 12}
    assert overview["error_rate"] == round(100 * 12 / 72, 2)
    assert overview["logs_per_minute"] == round(72 / 60, 2)
    day = get("/api/v1/metrics/overview", params={"time_range": "24h"}).json()
    assert day["total_logs"] == 77 and day["by_level"]["WARN"] == 5
    service = get("/api/v1/metrics/service/beta").json()
    assert service["total_logs"] == 12 and service["error_rate"] == 100.0
    assert service["top_errors"][0]["message"] == "database timeout after 30000 ms"
    assert service["top_errors"][0]["count"] == 8
    system = get("/api/v1/metrics/system", params={"time_range": "24h"}).json()
    assert system["total_services"] == 3 and system["total_logs"] == 77
    assert system["metrics_by_service"]["gamma"]["by_level"]["WARN"] == 5
    series = get("/api/v1/metrics/timeseries", params={"interval": "5m", "time_range": "1h"}).json()
    assert sum(point["count"] for point in series["data"]) == 72
    assert series["total_points"] == len(series["data"]) in (12, 13)
    beta = get("/api/v1/metrics/timeseries", params={"interval": "1m", "time_range": "6h", "service": "beta"}).json()
    assert sum(p["by_level"]["ERROR"] for p in beta["data"]) == 12


def test_metrics_cache_hits_and_clear(logflow: LogFlow) -> None:
    get = logflow.client.get
    first = get("/api/v1/metrics/overview")
    second = get("/api/v1/metrics/overview")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.json() == second.json()
    get("/api/v1/metrics/service/alpha")
    stats = get("/api/v1/cache/stats").json()
    assert set(stats) == {"connected", "used_memory", "connected_clients", "keyspace_hits", "keyspace_misses", "keys"}
    assert stats["connected"] is True and stats["keys"] >= 2 and stats["keyspace_hits"] >= 1
    cleared = logflow.admin.delete("/api/v1/cache/clear", params={"pattern": "metrics:service:*"}).json()
    assert cleared["deleted"] == 1
    assert get("/api/v1/metrics/overview").headers["X-Cache"] == "HIT"
    assert logflow.admin.delete("/api/v1/cache/clear").json()["deleted"] >= 1
    assert get("/api/v1/metrics/overview").headers["X-Cache"] == "MISS"


def test_health_and_root(logflow: LogFlow) -> None:
    health = logflow.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy"
    assert {s["status"] for s in body["services"].values()} == {"healthy"}
    root = logflow.client.get("/").json()
    assert root["name"] == "LogFlow" and root["health"] == "/health"
    assert logflow.client.get("/docs").status_code == 200
    assert logflow.client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/logs/search", {"limit": 0}),
        ("/api/v1/logs/search", {"limit": 1001}),
        ("/api/v1/logs/search", {"offset": -1}),
        ("/api/v1/logs/search", {"level": "LOUD"}),
        ("/api/v1/logs/search", {"start_time": "tomorrow"}),
        ("/api/v1/logs/search", {"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}),
        ("/api/v1/logs/search", {"field": "novalue"}),
        ("/api/v1/logs/search", {"sort": "sideways"}),
        ("/api/v1/logs/recent", {"limit": 5000}),
        ("/api/v1/metrics/overview", {"time_range": "forever"}),
        ("/api/v1/metrics/overview", {"time_range": "400d"}),
        ("/api/v1/metrics/timeseries", {"interval": "7m"}),
        ("/api/v1/metrics/timeseries", {"interval": "1m", "time_range": "7d"}),
    ],
)
def test_bad_parameters_are_422_with_a_reason(logflow: LogFlow, path: str, params: dict[str, Any]) -> None:
    resp = logflow.client.get(path, params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]
