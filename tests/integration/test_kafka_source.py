"""Kafka as a source: kcat writes seed-style JSON logs to a real topic; the search API reads them back.

The source consumer runs in-process (a thread) on both shapes: feeding the distributed shape (its
brokers by default) and an embedded LogFlow from the same Kafka cluster (``kafka_source_url``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient

from logflow.app import create_app
from logflow.backends.queue.embedded import EmbeddedQueue
from logflow.backends.queue.kafka import admin as kadmin
from logflow.backends.queue.kafka.config import KafkaOptions, parse_kafka_url
from logflow.cli.main import cli
from logflow.db.engine import make_engine
from logflow.db.migrate import upgrade
from logflow.domain.events import format_timestamp
from logflow.ingest.limits import IngestLimits
from logflow.ingest.pipeline import IngestPipeline
from logflow.ingest.processor import Processor
from logflow.ingest.protocols.kafka_source import (
    SOURCE_ITEM_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
    KafkaSource,
    SourceConfig,
    SourceConfigError,
)
from logflow.runtime import Runtime, build_cache, build_store
from logflow.settings import Settings
from tests.conftest import IN_CI, LogFlow, loghub_rows, require_engine

pytestmark = pytest.mark.distributed

_KEY_SEP, _RECORD_SEP = "\x1f", "\x1e"  # kcat -K / -D: JSON never contains these unescaped
LEVELS = {"INFO": "INFO", "WARN": "WARN", "ERROR": "ERROR", "notice": "INFO", "error": "ERROR"}


# -- helpers (also used by tests/e2e/test_kafka_source_crash.py) ---------------------------------

def kcat() -> str:
    """The kcat binary: a missing one fails in CI (the suite installs it) and skips elsewhere."""
    path = shutil.which("kcat")
    if path is None:
        if IN_CI:
            pytest.fail("kcat is not installed (scripts/stack.sh tools installs it)")
        pytest.skip("kcat is not installed")
    return path


def brokers() -> str:
    return parse_kafka_url(require_engine("kafka"))[0]


def kafka_admin() -> AdminClient:
    servers, extra = parse_kafka_url(require_engine("kafka"))
    return AdminClient(KafkaOptions(servers, extra=extra).admin())


@contextmanager
def source_topic(partitions: int = 3) -> Iterator[str]:
    """A fresh topic on the shared cluster; it and the groups ``<topic>*`` are deleted afterwards."""
    name = f"lf-src-{uuid.uuid4().hex[:10]}"
    admin = kafka_admin()
    kadmin.ensure_topics(admin, [name], partitions, probe_s=10, create_s=30)
    try:
        yield name
    finally:
        groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid
                  if g.group_id.startswith(name)]
        kadmin.delete_groups(admin, groups, 30)
        kadmin.delete_topics(admin, [name], 30)


def kcat_produce(topic: str, records: list[tuple[str, bytes]]) -> None:
    """Produce (key, value) records with kcat, as another system would; values may hold newlines."""
    data = b"".join(key.encode() + _KEY_SEP.encode() + value + _RECORD_SEP.encode() for key, value in records)
    done = subprocess.run([kcat(), "-P", "-b", brokers(), "-t", topic, "-K", _KEY_SEP, "-D", _RECORD_SEP],
                          input=data, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr.decode(errors="replace")


def kcat_read(topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` as kcat's JSON envelope (topic, partition, offset, key, payload, headers)."""
    done = subprocess.run([kcat(), "-C", "-b", brokers(), "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
                          capture_output=True, timeout=120, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def seed_message(system: str, row: dict[str, str], ts_us: int) -> dict[str, Any]:
    """A Loghub line as the seed's producers write logs: ISO timestamp, level, service, host, metadata."""
    doc: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(ts_us / 1e6, UTC).replace(tzinfo=None).isoformat(timespec="microseconds"),
        "service": system.lower(),
        "host": f"{system.lower()}-node-1",
        "message": row["Content"],
        "metadata": {"event_id": row["EventId"], "line": int(row["LineId"])},
    }
    if row.get("Level") in LEVELS:
        doc["level"] = row["Level"]
    return doc


def loghub_messages(systems: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    """(key, seed-style document) for the first N lines of each system, timestamps 1 ms apart."""
    now = time.time_ns() // 1000 - 3_600_000_000
    out = []
    for system, count in systems.items():
        for i, row in enumerate(loghub_rows(system)[:count]):
            out.append((system.lower(), seed_message(system, row, now + i * 1000)))
    return out


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def running(source: KafkaSource) -> Iterator[KafkaSource]:
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield source
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the source did not stop"


def search_all(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """Every match of a search (pages of 1000, oldest first)."""
    logs: list[dict[str, Any]] = []
    while True:
        page = client.get("/api/v1/logs/search",
                          params={**params, "limit": 1000, "offset": len(logs), "sort": "asc"})
        assert page.status_code == 200, page.text[:300]
        batch = page.json()["logs"]
        logs += batch
        if len(batch) < 1000:
            return logs


def source_config(settings: Settings, topic: str, group: str) -> SourceConfig:
    """The source config a `logflow kafka-source --topics TOPIC --group GROUP` would use."""
    url = "" if settings.queue_url.startswith("kafka://") else require_engine("kafka")
    return SourceConfig.from_settings(settings.model_copy(update={
        "kafka_source_topics": topic, "kafka_source_group": group, "kafka_source_url": url,
    }))


# -- tests -----------------------------------------------------------------------------------------

MALFORMED: dict[bytes, str] = {  # message value -> what the dead letter's reason must say
    b'{"message": "cut off': "not valid JSON",
    b'{"service": "billing", "level": "INFO"}': "missing 'message'",
    b'{"message": "too loud", "level": "LOUD"}': "unknown level",
    b'"just a string"': "must be a JSON object",
    b'[42, {"message": "kept from a mixed array", "service": "mixed"}]': "must be a JSON object",
}


def test_kcat_logs_are_searchable_and_malformed_ones_dead_lettered(logflow: LogFlow) -> None:
    with source_topic() as topic:
        messages = loghub_messages({"Zookeeper": 150, "Apache": 120})
        extra_ts_ms = time.time_ns() // 1_000_000 - 60_000
        records = [(key, orjson.dumps(doc)) for key, doc in messages]
        records += [
            ("array", orjson.dumps([{"message": "array item a", "service": "array"},
                                    {"message": "array item b", "service": "array", "level": "ERROR"}])),
            ("ndjson", b'{"message": "ndjson one", "service": "ndjson"}\n'
                       b'{"message": "ndjson two", "service": "ndjson", "level": "WARN"}\n'),
            ("own-id", b'{"message": "carries its own id", "service": "own-id", "id": "order-42"}'),
            *(("bad", value) for value in MALFORMED),
        ]
        kcat_produce(topic, records)
        # A message without a JSON timestamp takes the record's own: written with a known one.
        producer = Producer({"bootstrap.servers": brokers()})
        producer.produce(topic, b'{"message": "no timestamp inside", "service": "ts-fallback"}',
                         key=b"ts-fallback", timestamp=extra_ts_ms)
        assert producer.flush(30) == 0
        total = len(records) + 1

        source = KafkaSource(logflow.runtime, source_config(logflow.runtime.settings, topic, f"{topic}-g"),
                             batch_size=100)
        with running(source):
            wait_for(lambda: source.counters.messages == total, f"{total} messages consumed")
        logflow.settle()
        assert source.counters.dead_letters == len(MALFORMED)
        assert source.counters.accepted == len(messages) + 2 + 2 + 1 + 1 + 1

        # Where every record landed, as the cluster reports it (for ids and dead-letter headers).
        where = {(r["key"], r["payload"]): (r["partition"], r["offset"]) for r in kcat_read(topic)}
        client = logflow.client
        for system, count in (("zookeeper", 150), ("apache", 120)):
            stored = search_all(client, service=system)
            assert len(stored) == count
            sent = [doc for key, doc in messages if key == system]
            for log, doc in zip(stored, sent, strict=True):
                partition, offset = where[(system, orjson.dumps(doc).decode())]
                assert log["id"] == f"kafka:{topic}:{partition}:{offset}"
                assert log["message"] == doc["message"]
                assert log["timestamp"] == doc["timestamp"] + "Z"
                assert log["level"] == LEVELS.get(doc.get("level", "INFO"), "INFO")
                assert log["host"] == doc["host"]
                assert log["metadata"] == {**doc["metadata"], "kafka.topic": topic, "kafka.partition": partition,
                                           "kafka.offset": offset, "kafka.key": system}

        array = search_all(client, service="array")
        assert [(e["message"], e["level"]) for e in array] == [("array item a", "INFO"), ("array item b", "ERROR")]
        assert {e["id"].rsplit(":", 1)[1] for e in array} == {"0", "1"}
        ndjson = search_all(client, service="ndjson")
        assert sorted((e["message"], e["level"]) for e in ndjson) == [("ndjson one", "INFO"), ("ndjson two", "WARN")]
        assert [e["id"] for e in search_all(client, service="own-id")] == ["order-42"]
        (fallback,) = search_all(client, service="ts-fallback")
        assert fallback["timestamp"] == format_timestamp(extra_ts_ms * 1000)
        (mixed,) = search_all(client, service="mixed")
        assert mixed["message"] == "kept from a mixed array"
        by_topic = client.get("/api/v1/logs/search", params={"field": f"kafka.topic:{topic}", "limit": 1})
        assert by_topic.json()["total"] == source.counters.accepted

        # Dead letters: the queue's own reader sees every one with its reason ...
        letters = logflow.runtime.queue.read_dead_letters(50)
        assert len(letters) == len(MALFORMED)
        for value, reason in MALFORMED.items():
            sent_as = b"42" if value.startswith(b"[42") else value
            (letter,) = [d for d in letters if d.value == sent_as]
            assert reason in letter.reason
        # ... and on Kafka the source coordinates travel as headers (read back with kcat).
        if logflow.runtime.queue.kind == "kafka":
            dead = kcat_read(logflow.runtime.settings.kafka_dead_letter_topic)
            assert len(dead) == len(MALFORMED)
            for record in dead:
                headers = dict(zip(record["headers"][::2], record["headers"][1::2], strict=True))
                original = next(v for v in MALFORMED if v.decode() == record["payload"] or
                                (v.startswith(b"[42") and record["payload"] == "42"))
                partition, offset = where[("bad", original.decode())]
                assert headers[SOURCE_TOPIC_HEADER] == topic
                assert (headers[SOURCE_PARTITION_HEADER], headers[SOURCE_OFFSET_HEADER]) == (str(partition),
                                                                                              str(offset))
                assert MALFORMED[original] in headers["logflow-reason"]
                assert headers.get(SOURCE_ITEM_HEADER) == ("0" if original.startswith(b"[42") else None)


def test_redelivery_is_not_a_duplicate(logflow: LogFlow) -> None:
    """A second group re-reads the whole topic (as after a crash before the commit): same ids, no copies."""
    with source_topic() as topic:
        messages = loghub_messages({"OpenSSH": 200})
        kcat_produce(topic, [(key, orjson.dumps(doc)) for key, doc in messages])
        first_ids: list[str] = []
        for group in ("a", "b"):
            source = KafkaSource(logflow.runtime, source_config(logflow.runtime.settings, topic, f"{topic}-{group}"))
            with running(source):
                wait_for(lambda: source.counters.messages == len(messages), "all messages consumed")  # noqa: B023
            assert source.counters.accepted == len(messages)
            logflow.settle()
            stored = search_all(logflow.client, service="openssh")
            assert len(stored) == len(messages)
            ids = sorted(e["id"] for e in stored)
            assert len(set(ids)) == len(messages)
            if first_ids:
                assert ids == first_ids
            first_ids = ids


def test_full_queue_holds_the_batch_and_nothing_is_lost(make_settings: Callable[..., Settings],
                                                        tmp_path: Path) -> None:
    """An embedded LogFlow fed from Kafka whose queue refuses (QueueFull): no commit, retry, all stored once."""
    settings = make_settings(kafka_source_url=require_engine("kafka"))
    # The smallest backlog settings allow is 1 MiB; a 64 KiB queue makes the refusal come quickly.
    queue = EmbeddedQueue(settings.queue_dir, max_backlog_bytes=64 * 1024, min_free_disk_bytes=0)
    database = make_engine(settings.effective_database_url)
    upgrade(database)
    runtime = Runtime(settings=settings, queue=queue, store=build_store(settings), cache=build_cache(settings),
                      database=database, pipeline=IngestPipeline(queue, IngestLimits.from_settings(settings)))
    client = TestClient(create_app(runtime))
    stop_processor = threading.Event()
    draining: list[threading.Thread] = []
    try:
        with source_topic() as topic:
            messages = loghub_messages({"Hadoop": 600})
            kcat_produce(topic, [(key, orjson.dumps(doc)) for key, doc in messages])
            group = f"{topic}-g"
            source = KafkaSource(runtime, source_config(settings, topic, group), batch_size=50)
            with running(source):
                wait_for(lambda: "QueueFull" in source.counters.last_error, "the queue to refuse a batch")
                # Refused batches are not committed: the group's offsets cover exactly what was queued.
                admin = kafka_admin()
                committed = kadmin.committed_offsets(admin, group, topic, [0, 1, 2], kadmin.Deadline(10))
                consumed = source.counters.messages
                assert sum(committed.values()) == consumed < len(messages)
                assert runtime.pipeline.counters.accepted == consumed
                # A processor drains the queue; the source's retries then get through.
                processor = Processor(queue, runtime.store, group=settings.processor_group, batch_size=200)
                draining.append(threading.Thread(target=processor.run, args=(stop_processor,), daemon=True))
                draining[0].start()
                wait_for(lambda: source.counters.messages == len(messages), "every message consumed", 120)
            wait_for(lambda: queue.stats(settings.processor_group).partitions[0].lag == 0, "processor drained")
            runtime.store.refresh()
            stored = search_all(client, service="hadoop")
            assert sorted(e["metadata"]["line"] for e in stored) == list(range(1, len(messages) + 1))
            assert len({e["id"] for e in stored}) == len(messages)
            assert source.counters.retries >= 1 and source.counters.dead_letters == 0
    finally:
        stop_processor.set()
        for thread in draining:
            thread.join(timeout=30)
        client.close()
        runtime.close()


def test_configuration_refusals(make_settings: Callable[..., Settings]) -> None:
    embedded = make_settings(kafka_source_topics="orders")
    with pytest.raises(SourceConfigError, match="--source-url"):
        SourceConfig.from_settings(embedded)
    with pytest.raises(SourceConfigError, match="LOGFLOW_KAFKA_SOURCE_TOPICS"):
        SourceConfig.from_settings(make_settings(kafka_source_url="kafka://127.0.0.1:9092"))
    own = make_settings(queue_url="kafka://127.0.0.1:9092", kafka_source_topics="orders, logflow-events")
    with pytest.raises(SourceConfigError, match="LogFlow's own queue topics"):
        SourceConfig.from_settings(own)
    config = SourceConfig.from_settings(make_settings(queue_url="kafka://127.0.0.1:9092?client.rack=r1",
                                                      kafka_source_topics="a,b,a"))
    assert (config.servers, config.extra, config.topics) == ("127.0.0.1:9092", {"client.rack": "r1"}, ("a", "b"))
    # The command says the same and exits 2, before touching any engine.
    result = CliRunner().invoke(cli, ["kafka-source", "--topics", "orders", "--data-dir", str(embedded.data_dir)])
    assert result.exit_code == 2
    assert "LogFlow's queue is embedded" in result.output
