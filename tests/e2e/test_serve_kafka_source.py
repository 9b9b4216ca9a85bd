"""``logflow serve`` consumes Kafka topics itself when LOGFLOW_KAFKA_SOURCE_TOPICS is set.

The embedded queue has one writer process, so an embedded LogFlow fed from an existing Kafka cluster
runs the source inside ``serve``: kcat produces real Loghub lines, the search API returns them all.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import require_engine
from tests.e2e.helpers import ServeProcess, free_port
from tests.integration.test_kafka_source import kcat_produce, loghub_messages, source_topic, wait_for

pytestmark = pytest.mark.distributed


def total(url: str, **params: str) -> int:
    body = httpx.get(f"{url}/api/v1/logs/search", params={"limit": 1, **params}, timeout=10).json()
    return int(body["total"])


def test_serve_consumes_source_topics_into_the_embedded_store(tmp_path: Path) -> None:
    messages = loghub_messages({"Zookeeper": 150, "HDFS": 150})
    with source_topic() as topic:
        kcat_produce(topic, [(key, orjson.dumps(doc)) for key, doc in messages])
        env = {"LOGFLOW_KAFKA_SOURCE_TOPICS": topic, "LOGFLOW_KAFKA_SOURCE_URL": require_engine("kafka"),
               "LOGFLOW_KAFKA_SOURCE_GROUP": f"{topic}-serve"}
        serve = ServeProcess(tmp_path / "data", free_port(), env=env)
        try:
            serve.wait_healthy()
            wait_for(lambda: total(serve.url) == len(messages), "every produced line searchable")
            assert total(serve.url, service="zookeeper") == 150 and total(serve.url, service="hdfs") == 150
            assert total(serve.url, field=f"kafka.topic:{topic}") == len(messages)
        finally:
            serve.stop()
        # A restart resumes from the committed offsets: nothing is read (or stored) twice.
        again = ServeProcess(tmp_path / "data", free_port(), env=env)
        try:
            again.wait_healthy()
            kcat_produce(topic, [("late", orjson.dumps({"message": "after the restart", "service": "late"}))])
            wait_for(lambda: total(again.url, service="late") == 1, "the new message")
            again.wait_drained()
            assert total(again.url) == len(messages) + 1
        finally:
            again.stop()


def test_serve_refuses_a_source_without_brokers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "logflow", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
         "--syslog-port", "0", "--gelf-port", "0"],
        env={"PATH": "/usr/bin:/bin", "LOGFLOW_KAFKA_SOURCE_TOPICS": f"t-{uuid.uuid4().hex[:6]}"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Kafka source" in done.stderr and "LOGFLOW_KAFKA_SOURCE_URL" in done.stderr
