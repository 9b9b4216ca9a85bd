"""The distributed shape as separate processes on the real engines: scale-out and faults.

Every test ingests events with a unique sequence number and checks, through the search API, that
every acknowledged event is stored exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.distributed import Cluster, stack

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


class Ingestor:
    """Sends numbered events in batches; remembers which were acknowledged (HTTP 202)."""

    def __init__(self, url: str, service: str) -> None:
        self.url = url
        self.service = service
        self.next = 0
        self.acked: set[int] = set()
        self.refused: Counter[int] = Counter()

    def send(self, n: int, client: httpx.Client) -> int:
        seqs = list(range(self.next, self.next + n))
        self.next += n
        # Eight services: Kafka keys by service, so the events spread over the partitions.
        body = b"\n".join(
            orjson.dumps({"service": f"{self.service}-{s % 8}", "message": f"probe seq={s}", "metadata": {"seq": s}})
            for s in seqs
        )
        try:
            resp = client.post("/api/v1/ingest", content=body, headers={"Content-Type": "application/x-ndjson"})
        except httpx.HTTPError:
            return 0
        if resp.status_code == 202:
            self.acked.update(seqs)
        else:
            self.refused[resp.status_code] += 1
        return resp.status_code

    def run(self, stop: threading.Event, batch: int = 200, pause: float = 0.02, limit: int = 8000) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not stop.is_set() and self.next < limit:
                self.send(batch, client)
                time.sleep(pause)


def stored_seqs(url: str, service: str) -> Counter[int]:
    seqs: Counter[int] = Counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        offset = 0
        while True:
            services = ",".join(f"{service}-{i}" for i in range(8))
            page = client.get("/api/v1/logs/search", params={"service": services, "limit": 1000, "offset": offset,
                                                              "sort": "asc"}).json()
            seqs.update(log["metadata"]["seq"] for log in page["logs"])
            offset += len(page["logs"])
            if not page["logs"] or offset >= 10_000:
                return seqs


def assert_exactly_once(url: str, ingestor: Ingestor) -> None:
    services = ",".join(f"{ingestor.service}-{i}" for i in range(8))
    # OpenSearch is near-real-time: what the processor just wrote is searchable after a refresh
    # (1 s by default), so wait until the total has caught up before paging through everything.
    deadline = time.monotonic() + 15
    while True:
        total = httpx.get(f"{url}/api/v1/logs/search", params={"service": services, "limit": 1}, timeout=30).json()
        if total["total"] >= len(ingestor.acked) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    stored = stored_seqs(url, ingestor.service)
    missing = ingestor.acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged events missing, e.g. {sorted(missing)[:5]}"
    doubled = [s for s, n in stored.items() if n > 1]
    assert not doubled, f"stored twice: {doubled[:5]}"


def test_two_processors_share_partitions_and_survive_kill_minus_nine(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, processors=2)
    try:
        cluster.wait_healthy()
        ingestor = Ingestor(cluster.url, "scaleout")
        stop = threading.Event()
        worker = threading.Thread(target=ingestor.run, args=(stop,), kwargs={"limit": 9000, "batch": 100, "pause": 0.1})
        worker.start()
        # Both members must own partitions and have stored some events before one dies mid-stream.
        deadline = time.monotonic() + 60
        while True:
            reports = cluster.status()["processors"]
            if len(reports) == 2 and all(r["stored"] > 0 for r in reports):  # type: ignore[index, union-attr]
                break
            assert time.monotonic() < deadline and worker.is_alive(), f"processors did not share work: {reports}"
            time.sleep(0.2)
        cluster.processors[0].kill9()  # its partitions must move to the survivor
        worker.join(timeout=120)
        assert len(ingestor.acked) == 9000, ingestor.refused
        cluster.wait_drained()
        assert_exactly_once(cluster.url, ingestor)
    finally:
        cluster.stop()


@pytest.mark.faults
def test_store_outage_backs_off_and_drains_without_loss(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, processors=1)
    ingestor = Ingestor(cluster.url, "store-outage")
    try:
        cluster.wait_healthy()
        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            assert ingestor.send(500, client) == 202
            cluster.wait_drained()
            stack("down", "opensearch")
            try:
                for _ in range(10):  # Kafka is up: ingest keeps acknowledging
                    assert ingestor.send(300, client) == 202
                time.sleep(3)
                assert cluster.status()["queue"]["total_lag"] > 0  # type: ignore[index]
            finally:
                stack("up", "opensearch")
            cluster.wait_drained(timeout=180)
        processor = cluster.status()["processors"][0]  # type: ignore[index]
        assert processor["store_errors"] > 0
        assert_exactly_once(cluster.url, ingestor)
        assert len(ingestor.acked) == 3500
    finally:
        cluster.stop()


@pytest.mark.faults
def test_cache_outage_degrades_health_but_answers(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, processors=1)
    try:
        cluster.wait_healthy()
        stack("down", "redis")
        try:
            health = httpx.get(f"{cluster.url}/health", timeout=10)
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert health.json()["services"]["cache"]["status"] == "degraded"
            overview = httpx.get(f"{cluster.url}/api/v1/metrics/overview", timeout=10)
            assert overview.status_code == 200 and "total_logs" in overview.json()
        finally:
            stack("up", "redis")
        deadline = time.monotonic() + 20
        while httpx.get(f"{cluster.url}/health", timeout=10).json()["status"] != "healthy":
            assert time.monotonic() < deadline, "cache did not reconnect"
            time.sleep(0.5)
    finally:
        cluster.stop()


@pytest.mark.faults
def test_kafka_restart_gives_503_and_loses_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, processors=1)
    ingestor = Ingestor(cluster.url, "broker-restart")
    try:
        cluster.wait_healthy()
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            assert ingestor.send(400, client) == 202
            stack("down", "kafka")
            try:
                status = ingestor.send(100, client)
                assert status == 503, status
            finally:
                stack("up", "kafka")
            deadline = time.monotonic() + 90
            while ingestor.send(100, client) != 202:
                assert time.monotonic() < deadline, "ingest did not recover after the broker restart"
                time.sleep(1)
            for _ in range(5):
                assert ingestor.send(200, client) == 202
        cluster.wait_drained(timeout=180)
        assert_exactly_once(cluster.url, ingestor)
    finally:
        cluster.stop()
