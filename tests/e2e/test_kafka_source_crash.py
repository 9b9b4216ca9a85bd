"""kill -9 of a real `logflow kafka-source` mid-stream, then a restart: every message once in the store.

Runs the distributed shape as separate processes (`logflow api`, `logflow processor`, `logflow
kafka-source`) on the real engines, with kcat producing Loghub lines as seed-style JSON.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from logflow.backends.queue.kafka import admin as kadmin
from tests.e2e.distributed import Cluster, Proc
from tests.integration.test_kafka_source import kafka_admin, kcat_produce, loghub_messages, source_topic, wait_for

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SYSTEMS = {"Zookeeper": 800, "HDFS": 800, "OpenSSH": 800}
CHUNK = 100
BEFORE_KILL = 5  # chunks produced while the first source process runs; the rest while it is dead


def committed_and_end(topic: str, group: str) -> tuple[int, int]:
    """(records the group committed, records in the topic), summed over partitions."""
    admin = kafka_admin()
    deadline = kadmin.Deadline(10)
    partitions = kadmin.partitions_of(kadmin.cluster_metadata(admin, deadline), topic) or []
    marks = kadmin.watermarks(admin, {topic: partitions}, deadline)
    committed = kadmin.committed_offsets(admin, group, topic, partitions, deadline)
    return sum(committed.values()), sum(m.high for m in marks.values())


def test_kill_9_mid_stream_then_restart_stores_every_message_once(tmp_path: Path) -> None:
    with source_topic() as topic:
        group = f"{topic}-g"
        cluster = Cluster(tmp_path, processors=1, LOGFLOW_KAFKA_SOURCE_TOPICS=topic, LOGFLOW_KAFKA_SOURCE_GROUP=group)
        try:
            cluster.wait_healthy()
            messages = loghub_messages(SYSTEMS)
            records = [(key, orjson.dumps(doc)) for key, doc in messages]
            chunks = [records[i:i + CHUNK] for i in range(0, len(records), CHUNK)]

            def start_source(name: str) -> Proc:
                # Small batches: many commits, so the kill lands between some of them.
                return Proc(["kafka-source", "--batch", "20", "--status-interval", "1"], cluster.env,
                            tmp_path / f"{name}.log")

            source = start_source("source-1")
            wait_for(lambda: "kafka source: assigned" in source.log.read_text(), "partition assignment", 60)
            killed = threading.Event()

            def produce() -> None:
                for n, chunk in enumerate(chunks):
                    if n == BEFORE_KILL:
                        killed.wait(120)
                    kcat_produce(topic, chunk)
                    time.sleep(0.05)  # pacing, like a live system: the stream is still flowing

            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            wait_for(lambda: committed_and_end(topic, group)[0] >= 2 * CHUNK, "the source to commit progress")
            source.kill9()
            source.stop()  # it is dead already: this only closes its log file
            at_kill, _ = committed_and_end(topic, group)
            killed.set()
            assert at_kill < len(records)  # mid-stream: most of the stream is still to come

            source = start_source("source-2")
            producer.join(timeout=120)
            assert not producer.is_alive()
            wait_for(lambda: committed_and_end(topic, group) == (len(records), len(records)),
                     "the restarted source to commit everything", 180)
            cluster.wait_drained()

            def search(service: str, offset: int = 0) -> dict[str, object]:
                params: dict[str, str | int] = {"service": service, "limit": 1000, "offset": offset, "sort": "asc"}
                answer: dict[str, object] = httpx.get(f"{cluster.url}/api/v1/logs/search", params=params,
                                                      timeout=30).json()
                return answer

            for system, count in SYSTEMS.items():
                # OpenSearch makes new documents visible on its refresh interval: poll for the count.
                wait_for(lambda: search(system.lower())["total"] == count,  # noqa: B023
                         f"{count} {system} events searchable", 60)
                stored: list[dict[str, object]] = []
                while len(stored) < count:
                    page = search(system.lower(), len(stored))["logs"]
                    assert isinstance(page, list) and page
                    stored += page
                lines = sorted(int(e["metadata"]["line"]) for e in stored)  # type: ignore[index]
                assert lines == list(range(1, count + 1)), f"{system}: lost or duplicated lines"
                assert all(str(e["id"]).startswith(f"kafka:{topic}:") for e in stored)

            source.stop()  # SIGTERM: finish the in-flight batch, commit, leave the group
            assert source.popen.returncode == 0
            assert "(stopped)" in source.log.read_text()
        finally:
            cluster.stop()
