"""The measurements themselves: ingest throughput, query latency percentiles, disk per event."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from logflow.bench.workers import in_parallel
from logflow.generator import GeneratorConfig, LogGenerator, to_ndjson

DAY_US = 86_400_000_000
RARE_TERM = "xqzv_divergence"
RARE_COUNT = 10


@dataclass
class Dataset:
    """NDJSON request bodies spanning the last 24 hours, generated before any timing starts."""

    bodies: list[bytes]
    events: int
    raw_bytes: int


def make_dataset(events: int, batch: int, progress: Callable[[int], None]) -> Dataset:
    now = time.time_ns() // 1000
    # Start a little after now-24h so that every event is still inside the 24 h metrics window.
    gen = LogGenerator(GeneratorConfig(seed=42, start_us=now - DAY_US + 60_000_000, rate=events / 86_000))
    bodies: list[bytes] = []
    made = 0
    needle_every = max(1, events // RARE_COUNT)
    while made < events:
        n = min(batch, events - made)
        chunk = gen.batch(n)
        # A few events carry a token found nowhere else: the "rare term" with a known hit count.
        for i in range(n):
            if (made + i) % needle_every == 0 and (made + i) // needle_every < RARE_COUNT:
                chunk[i]["message"] = f"replica {RARE_TERM} detected on shard {i % 8}"
        bodies.append(to_ndjson(chunk))
        made += n
        progress(n)
    return Dataset(bodies=bodies, events=events, raw_bytes=sum(len(b) for b in bodies))


@dataclass
class IngestResult:
    events: int
    acked_s: float
    searchable_s: float
    rejected: int
    retries: int

    @property
    def acked_rate(self) -> float:
        return self.events / self.acked_s

    @property
    def searchable_rate(self) -> float:
        return self.events / self.searchable_s


def ingest(url: str, data: Dataset, concurrency: int, headers: dict[str, str],
           progress: Callable[[int], None]) -> IngestResult:
    """Post every body with ``concurrency`` clients; wait until the pipeline lag is zero."""
    lock = threading.Lock()
    counts = {"rejected": 0, "retries": 0}

    def send(client: httpx.Client, index: int) -> None:
        body = data.bodies[index]
        while True:
            resp = client.post("/api/v1/ingest", content=body,
                               headers={"Content-Type": "application/x-ndjson", **headers})
            if resp.status_code in (202, 207):
                # orjson: the client shares the 2 cores with the server; json would cost it ~1 µs/event.
                rejected = orjson.loads(resp.content)["rejected"]
                with lock:
                    counts["rejected"] += rejected
                progress(body.count(b"\n") + 1)
                return
            if resp.status_code not in (503, 507, 429):
                raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            with lock:
                counts["retries"] += 1
            time.sleep(float(resp.headers.get("Retry-After", "1")))

    started = time.perf_counter()
    in_parallel(len(data.bodies), concurrency, lambda: httpx.Client(base_url=url, timeout=120.0), send)
    acked = time.perf_counter() - started
    with httpx.Client(base_url=url, timeout=30.0) as client:
        wait_for_zero_lag(client)
    return IngestResult(data.events, acked, time.perf_counter() - started, counts["rejected"], counts["retries"])


def wait_for_zero_lag(client: httpx.Client) -> None:
    """Poll the pipeline status until the processors have committed everything.

    Each status read costs the engines work (on Kafka: offset lookups), and the benchmark shares
    their cores: polled every 50 ms, it took ~15 % of the machine while the backlog drained. So
    the pause is a quarter of the time the backlog will take at its current rate (50-500 ms),
    which still finds the end within 50 ms.
    """
    first: tuple[float, int] | None = None
    while True:
        lag = int(client.get("/api/v1/pipeline/status").json()["queue"]["total_lag"])
        if lag == 0:
            return
        now = time.perf_counter()
        pause = 0.2
        if first is None:
            first = (now, lag)
        elif first[1] > lag:
            rate = (first[1] - lag) / (now - first[0])
            pause = lag / rate / 4
        time.sleep(min(0.5, max(0.05, pause)))


def until_searchable(client: httpx.Client, event: dict[str, str], headers: dict[str, str], *, poll_s: float,
                     timeout_s: float | None = None) -> float:
    """Ingest one event; seconds from its 202 until ``GET /logs/{id}`` returns it."""
    resp = client.post("/api/v1/ingest", json=event, headers=headers)
    resp.raise_for_status()
    event_id = resp.json()["results"][0]["id"]
    acked = time.perf_counter()
    while client.get(f"/api/v1/logs/{event_id}").status_code != 200:
        if timeout_s is not None and time.perf_counter() - acked > timeout_s:
            raise RuntimeError(f"event {event_id} was not searchable after {timeout_s:.0f}s")
        time.sleep(poll_s)
    return time.perf_counter() - acked


def warm_up(url: str, headers: dict[str, str], timeout_s: float = 120.0) -> None:
    """Ingest one event and wait until it can be read back: every process is up and connected
    (processors in their consumer group, partitions assigned) before the clock starts."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        until_searchable(client, {"service": "bench-warm-up", "message": "warm up"}, headers, poll_s=0.1,
                         timeout_s=timeout_s)


@dataclass
class Latency:
    name: str
    samples_ms: list[float] = field(default_factory=list)
    detail: str = ""

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def time_requests(client: httpx.Client, name: str, path: str, params: dict[str, Any], repeat: int,
                  before: Callable[[], None] | None = None) -> Latency:
    """Wall-clock latency of ``repeat`` GETs as a client sees it (HTTP included)."""
    result = Latency(name)
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        resp = client.get(path, params=params)
        result.samples_ms.append((time.perf_counter() - started) * 1000)
        resp.raise_for_status()
        body = resp.json()
        if "total" in body:
            result.detail = f"{body['total']}{'+' if body.get('total_relation') == 'gte' else ''} hits"
    return result


def visibility(url: str, repeat: int, headers: dict[str, str]) -> Latency:
    """From the 202 of a one-event ingest until the event is returned by ``GET /logs/{id}``."""
    result = Latency("ingest → searchable (one event)")
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for i in range(repeat):
            seconds = until_searchable(client, {"service": "bench-probe", "message": f"probe {i}"}, headers,
                                       poll_s=0.005)
            result.samples_ms.append(seconds * 1000)
    return result


def admin_headers(url: str, password: str) -> dict[str, str]:
    """A bearer token for the admin account (clearing the cache needs it)."""
    resp = httpx.post(f"{url}/api/v1/auth/login", data={"username": "admin", "password": password}, timeout=30)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def query_suite(url: str, repeat: int, admin: dict[str, str]) -> list[Latency]:
    """The query kinds named in the issue (search: 4 kinds; metrics uncached and cached), plus the
    two filter-only searches a log viewer opens with (a service's warnings, every error)."""
    now = time.time()
    six_hours_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 6 * 3600))
    with httpx.Client(base_url=url, timeout=60.0) as client:

        def uncache() -> None:
            client.delete("/api/v1/cache/clear", headers=admin).raise_for_status()

        results = [
            time_requests(client, "search: common term", "/api/v1/logs/search", {"query": "request"}, repeat),
            time_requests(client, "search: rare term", "/api/v1/logs/search", {"query": RARE_TERM}, repeat),
            time_requests(client, "search: term + level", "/api/v1/logs/search",
                          {"query": "timeout", "level": "ERROR"}, repeat),
            time_requests(client, "search: term + service + 6h", "/api/v1/logs/search",
                          {"query": "completed", "service": "order-service", "start_time": six_hours_ago}, repeat),
            time_requests(client, "search: service + level, no text", "/api/v1/logs/search",
                          {"service": "payment-service", "level": "WARN"}, repeat),
            time_requests(client, "search: level, no text", "/api/v1/logs/search", {"level": "ERROR"}, repeat),
            time_requests(client, "metrics: overview 1h (uncached)", "/api/v1/metrics/overview",
                          {"time_range": "1h"}, repeat, uncache),
            time_requests(client, "metrics: overview 24h (uncached)", "/api/v1/metrics/overview",
                          {"time_range": "24h"}, repeat, uncache),
            time_requests(client, "metrics: timeseries 1m/24h (uncached)", "/api/v1/metrics/timeseries",
                          {"interval": "1m", "time_range": "24h"}, repeat, uncache),
            time_requests(client, "metrics: service 24h (uncached)", "/api/v1/metrics/service/payment-service",
                          {"time_range": "24h"}, repeat, uncache),
            time_requests(client, "metrics: overview 24h (cached)", "/api/v1/metrics/overview",
                          {"time_range": "24h"}, repeat),
        ]
    return results
