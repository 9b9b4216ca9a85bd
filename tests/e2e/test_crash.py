"""kill -9 of `logflow serve` during steady ingest loses no acknowledged event and duplicates none."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import ServeProcess, child_pids, free_port
from tests.integration.test_shipper import wait_for

pytestmark = pytest.mark.slow


def _ingest_until(url: str, stop: threading.Event, next_seq: list[int], acked: set[int], limit: int) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        while not stop.is_set() and next_seq[0] < limit:
            seqs = list(range(next_seq[0], min(next_seq[0] + 100, limit)))
            next_seq[0] += len(seqs)
            batch = [{"service": "crash", "message": f"crash probe seq={s}", "metadata": {"seq": s}} for s in seqs]
            try:
                resp = client.post("/api/v1/ingest", json=batch)
            except httpx.HTTPError:
                return  # the server died mid-request: these were never acknowledged
            if resp.status_code == 202:
                acked.update(seqs)


def _stored_seqs(url: str) -> Counter[int]:
    seqs: Counter[int] = Counter()
    ids: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=30.0) as client:
        offset = 0
        while True:
            page = client.get("/api/v1/logs/search",
                              params={"service": "crash", "limit": 1000, "offset": offset, "sort": "asc"}).json()
            for log in page["logs"]:
                seqs[log["metadata"]["seq"]] += 1
                ids[log["id"]] += 1
            offset += len(page["logs"])
            if not page["logs"]:
                break
    assert all(n == 1 for n in ids.values()), "an event id is stored twice"
    return seqs


def test_kill_minus_nine_during_ingest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acked: set[int] = set()
    next_seq = [0]
    limit = 9000
    for round_no in range(2):
        server = ServeProcess(data, free_port())
        server.wait_healthy()
        stop = threading.Event()
        worker = threading.Thread(target=_ingest_until, args=(server.url, stop, next_seq, acked, limit))
        worker.start()
        time.sleep(1.5 + round_no * 0.7)  # mid-stream, at a different point each round
        server.kill9()
        stop.set()
        worker.join(timeout=30)
    assert len(acked) > 500, "the test did not ingest enough before the kill to mean anything"
    server = ServeProcess(data, free_port())
    try:
        server.wait_healthy()
        server.wait_drained()
        stored = _stored_seqs(server.url)
    finally:
        server.stop()
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    doubled = [s for s, n in stored.items() if n > 1]
    assert not doubled, f"events stored twice: {doubled[:5]}"
    assert set(stored) <= set(range(next_seq[0]))


def _processor_children(serve_pid: int) -> list[int]:
    """Pids of serve's processor children (spawned by multiprocessing, unlike its resource tracker)."""
    return child_pids(serve_pid, b"spawn_main")


def test_serve_starts_its_processor_again_after_a_kill(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data", free_port())
    try:
        server.wait_healthy()
        wait_for(lambda: len(_processor_children(server.proc.pid)) == 1, "the processor child", timeout=30)
        first = _processor_children(server.proc.pid)[0]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: first not in _processor_children(server.proc.pid), "the killed processor to exit", timeout=30)
        # Acknowledged while no processor runs: the queue keeps them for the next one.
        batch = [{"service": "restart", "message": f"after the kill seq={i}"} for i in range(300)]
        assert httpx.post(f"{server.url}/api/v1/ingest", json=batch, timeout=10).status_code == 202
        wait_for(lambda: len(_processor_children(server.proc.pid)) == 1, "a new processor child", timeout=30)
        second = _processor_children(server.proc.pid)[0]
        assert second != first
        server.wait_drained()
        found = httpx.get(f"{server.url}/api/v1/logs/search", params={"service": "restart", "limit": 1}).json()
        assert found["total"] == 300
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert f"processor {first} exited with code -9" in log
