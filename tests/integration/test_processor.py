"""Processor behaviour on the embedded shape: dead letters, retention, replays."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from logflow.backends.queue.base import QueueRecord
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from logflow.ingest.processor import Processor
from logflow.runtime import Runtime
from logflow.settings import Settings
from tests.conftest import LogFlow, start_logflow, stop_logflow

DAY_US = 86_400_000_000


def test_undecodable_payload_goes_to_dead_letters_and_the_rest_is_stored(
    make_settings: Callable[..., Settings],
) -> None:
    flow: LogFlow = start_logflow(make_settings())
    try:
        good = LogEvent(id="good-1", timestamp=time.time_ns() // 1000, level=Level.INFO, service="s", message="fine")
        flow.runtime.queue.publish([QueueRecord(b"s", b"{broken"), QueueRecord(b"s", good.to_wire())])
        flow.settle()
        letters = flow.client.get("/api/v1/pipeline/dead-letters").json()
        assert letters["count"] == 1
        assert "undecodable" in letters["dead_letters"][0]["reason"]
        assert letters["dead_letters"][0]["payload"] == "{broken"
        assert flow.client.get("/api/v1/logs/good-1").status_code == 200
        status = flow.client.get("/api/v1/pipeline/status").json()
        assert status["queue"]["dead_letters"] == 1 and status["queue"]["total_lag"] == 0
    finally:
        stop_logflow(flow)


def test_retention_drops_whole_old_partitions(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(data_dir=tmp_path, retention_days=2))
    now = time.time_ns() // 1000
    old = [LogEvent(id=f"old-{i}", timestamp=now - 5 * DAY_US + i, level=Level.INFO, service="s", message="old")
           for i in range(3)]
    new = [LogEvent(id=f"new-{i}", timestamp=now - i, level=Level.INFO, service="s", message="new") for i in range(3)]
    runtime.store.write(old + new)
    assert runtime.store.stats().partitions == 2
    processor = Processor(runtime.queue, runtime.store, group="g", retention_s=2 * 86400, retention_check_s=3600)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join()
    assert runtime.store.stats().partitions == 1
    assert runtime.store.get("old-0") is None and runtime.store.get("new-0") is not None
    runtime.close()


def test_replayed_batch_is_not_stored_twice(make_settings: Callable[..., Settings]) -> None:
    flow = start_logflow(make_settings())
    try:
        event = LogEvent(id="replay-1", timestamp=time.time_ns() // 1000, level=Level.WARN, service="r",
                         message="once")
        record = QueueRecord(b"r", event.to_wire())
        flow.runtime.queue.publish([record, record])  # the same event twice, as after a crash
        flow.settle()
        assert flow.client.get("/api/v1/logs/search", params={"service": "r"}).json()["total"] == 1
    finally:
        stop_logflow(flow)
