"""Dead letters back onto the queue once their cause is fixed: through the API, the CLI, and after
a real refusal by OpenSearch (a write-blocked index). Each replayed event is stored exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from logflow.backends.errors import QueueFull, ReplayInProgress
from logflow.backends.queue.base import DeadLetter, QueueRecord
from logflow.backends.queue.embedded import EmbeddedQueue
from logflow.backends.queue.kafka.packing import encode as encode_pack
from logflow.backends.store.opensearch.client import parse_store_url
from logflow.backends.store.opensearch.mapping import index_name
from logflow.cli.main import cli
from logflow.domain.events import (
    MAX_TIMESTAMP_US,
    MIN_TIMESTAMP_US,
    encode_record,
    pack_document_record,
    read_document_record,
    read_wire,
)
from logflow.domain.levels import Level
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError, normalize_into
from logflow.ingest.replay import DEFAULT_REPLAY_GROUP, ReplayInterrupted, replay_dead_letters
from logflow.settings import Settings
from tests.conftest import (
    LogFlow,
    distributed_overrides,
    drop_distributed_resources,
    loghub_events,
    start_logflow,
    stop_logflow,
)

REPLAY = "/api/v1/pipeline/dead-letters/replay"
FOREIGN = b"written by something else"


def queue_payloads(flow: LogFlow, events: list[dict[str, Any]]) -> list[bytes]:
    """Events as the ingest pipeline puts them on this shape's queue (format 3 on OpenSearch)."""
    now = time.time_ns() // 1000
    payloads = []
    for event in events:
        encoded = normalize_into(flow.runtime.pipeline.encoder, event, now_us=now, limits=IngestLimits())
        assert not isinstance(encoded, ItemError)
        payloads.append(encoded[2])
    return payloads


def total(flow: LogFlow, **params: str) -> int:
    flow.settle()
    found: int = flow.admin.get("/api/v1/logs/search", params=params).json()["total"]
    return found


def test_replay_stores_each_dead_letter_once_and_passes_foreign_payloads_over(logflow: LogFlow) -> None:
    events = loghub_events("OpenSSH", limit=60)
    payloads = queue_payloads(logflow, events)
    at_ms = int(time.time() * 1000)
    refused = "store refused the event: index blocked"
    logflow.runtime.queue.dead_letter([DeadLetter(payload, refused, at_ms) for payload in payloads])
    logflow.runtime.queue.dead_letter([DeadLetter(FOREIGN, "unreadable queue payload", at_ms)])
    # Format 1 as dead letters keep events, but not decodable by a processor: a service that is
    # no string, an event without an id. Never replayed (they could never be stored).
    logflow.runtime.queue.dead_letter([DeadLetter(b'{"t":1,"l":1,"s":5,"i":"x","m":"m"}', "undecodable", at_ms),
                                       DeadLetter(b'{"t":1,"l":1,"s":"svc","m":"no id"}', "undecodable", at_ms)])

    assert logflow.client.post(REPLAY).status_code == 401
    reader = {"X-API-Key": logflow.api_key("admin", ["read"])}
    assert logflow.client.post(REPLAY, headers=reader).status_code == 403  # replaying takes an admin
    dry = logflow.admin.post(REPLAY, params={"dry_run": "true"}).json()
    assert dry == {
        "dry_run": True, "pending": 63, "read": 63, "replayed": 0, "unreadable": 3, "remaining": 63,
        "reasons": [{"reason": "store refused the event: index blocked", "count": 60},
                    {"reason": "undecodable", "count": 2}, {"reason": "unreadable queue payload", "count": 1}],
    }
    assert total(logflow, service="openssh") == 0  # a dry run publishes nothing

    first = logflow.admin.post(REPLAY, params={"limit": 25}).json()
    assert (first["read"], first["remaining"]) == (25, 38)
    rest = logflow.admin.post(REPLAY).json()
    assert (rest["pending"], rest["read"], rest["remaining"]) == (38, 38, 0)
    # On Kafka the letters are spread over partitions: the foreign ones may come in either part.
    assert (first["replayed"] + rest["replayed"], first["unreadable"] + rest["unreadable"]) == (60, 3)
    assert total(logflow, service="openssh") == 60
    for payload in payloads[:5]:
        event_id = _format_3_id(payload) if payload[:1] == b"\x03" else read_wire(payload)[3]["i"]
        assert logflow.admin.get(f"/api/v1/logs/{event_id}").status_code == 200

    assert logflow.admin.post(REPLAY).json()["pending"] == 0  # the group remembers how far it got
    # A second group replays everything again: the store still keeps each event once.
    again = replay_dead_letters(logflow.runtime.queue, group="second-pass")
    assert (again.replayed, again.unreadable) == (60, 3)
    assert total(logflow, service="openssh") == 60
    listed = logflow.admin.get("/api/v1/pipeline/dead-letters", params={"limit": 1000}).json()
    assert listed["count"] == 63  # replayed letters stay listed


def test_a_pack_dead_lettered_whole_is_replayed_as_its_events(logflow: LogFlow) -> None:
    """A processor older than packs dead-letters a whole Kafka pack as one payload."""
    payloads = queue_payloads(logflow, loghub_events("Apache", limit=40))
    logflow.runtime.queue.dead_letter([DeadLetter(encode_pack(payloads), "unknown queue wire format", 1)])
    report = logflow.admin.post(REPLAY).json()
    assert (report["read"], report["replayed"], report["unreadable"]) == (1, 40, 0)
    assert total(logflow, service="apache") == 40


def test_one_replay_of_a_group_at_a_time(logflow: LogFlow) -> None:
    payloads = queue_payloads(logflow, loghub_events("HDFS"))
    logflow.runtime.queue.dead_letter([DeadLetter(p, "refused", 1) for p in payloads])
    answers: list[int] = []

    def meanwhile(_: int) -> None:  # called between batches of the first replay
        if not answers:
            answers.append(logflow.admin.post(REPLAY).status_code)

    report = replay_dead_letters(logflow.runtime.queue, progress=meanwhile)
    assert answers == [409] and report.replayed == len(payloads) == 2000
    assert total(logflow, service="hdfs") == 2000


def test_a_replay_that_stops_part_way_keeps_what_it_committed(tmp_path: Path) -> None:
    queue = EmbeddedQueue(tmp_path / "queue", max_backlog_bytes=256 * 1024, min_free_disk_bytes=0)
    try:
        queue.consumer("processors").close()  # a group that does not consume: the backlog fills up
        payloads = [encode_record(f"id-{i:05d}", 1_700_000_000_000_000 + i, Level.INFO, "svc", "x" * 300, None,
                                  None, None, None, None, {}, ())[2] for i in range(5000)]
        queue.dead_letter([DeadLetter(p, "refused", 1) for p in payloads])
        with pytest.raises(ReplayInterrupted) as stopped:
            replay_dead_letters(queue)
        done = stopped.value.report
        assert isinstance(stopped.value.cause, QueueFull)
        assert 0 < done.replayed < 5000 and done.replayed % 1000 == 0 and done.read == done.replayed
        cursor = queue.dead_letter_cursor(DEFAULT_REPLAY_GROUP)
        assert cursor.pending == 5000 - done.replayed  # the committed batches stay replayed
        cursor.close()
    finally:
        queue.close()


def _format_3_id(payload: bytes) -> str:
    return read_document_record(payload)[1].decode()


@pytest.mark.distributed
def test_events_refused_by_a_write_blocked_index_are_stored_after_the_block_is_lifted(
    make_settings: Callable[..., Settings],
) -> None:
    flow = start_logflow(make_settings(**distributed_overrides()))
    settings = flow.runtime.settings
    endpoint = parse_store_url(settings.store_url)
    try:
        assert flow.ingest({"message": "creates today's index", "service": "setup"}).status_code == 202
        flow.settle()
        index = index_name(settings.store_index_prefix, time.time_ns() // 1000 // 86_400_000_000)
        blocked = {"index.blocks.write": True}
        httpx.put(f"{endpoint.base_url}/{index}/_settings", json=blocked, auth=endpoint.auth).raise_for_status()
        try:
            now = time.time_ns() // 1000
            events = loghub_events("Zookeeper", limit=80, now_us=now)
            assert flow.ingest(events).json()["accepted"] == 80
            deadline = time.monotonic() + 60
            while flow.runtime.queue.stats(settings.processor_group).dead_letters < 80:
                assert time.monotonic() < deadline, "the refused events never reached the dead letters"
                time.sleep(0.2)
        finally:
            httpx.put(f"{endpoint.base_url}/{index}/_settings", json={"index.blocks.write": False},
                      auth=endpoint.auth).raise_for_status()
        assert total(flow, service="zookeeper") == 0
        reasons = flow.admin.post(REPLAY, params={"dry_run": "true"}).json()["reasons"]
        assert sum(r["count"] for r in reasons) == 80 and all("blocked" in r["reason"] for r in reasons)
        report = flow.admin.post(REPLAY).json()
        assert (report["replayed"], report["unreadable"], report["remaining"]) == (80, 0, 0)
        assert total(flow, service="zookeeper") == 80
        messages = {log["message"] for log in flow.admin.get(
            "/api/v1/logs/search", params={"service": "zookeeper", "limit": 100}).json()["logs"]}
        assert messages == {event["message"] for event in events}
    finally:
        stop_logflow(flow)
        drop_distributed_resources(settings, flow.runtime.queue)


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_lists_and_replays_dead_letters_of_the_embedded_queue(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    queue = EmbeddedQueue(settings.queue_dir)
    events = [{"message": f"refused {i}", "service": "billing"} for i in range(30)]
    now = time.time_ns() // 1000
    payloads = []
    for event in events:
        encoded = normalize_into(encode_record, event, now_us=now, limits=IngestLimits())
        assert not isinstance(encoded, ItemError)
        payloads.append(encoded[2])
    queue.dead_letter([DeadLetter(p, "mapping refused", 1_700_000_000_000 + i) for i, p in enumerate(payloads)])
    consumer = queue.consumer("check")  # registered now: sees what the replay publishes
    consumer.close()

    # While a writer holds the queue (a running `logflow serve`), the CLI points at the API.
    held = run_cli("dead-letters", "replay", "--data-dir", str(tmp_path))
    assert held.exit_code == 1 and "POST /api/v1/pipeline/dead-letters/replay" in held.output
    queue.close()

    status = run_cli("status", "--data-dir", str(tmp_path), "--sample", "0")
    assert status.exit_code == 0, status.output
    assert "dead letters 30" in status.output and "logflow dead-letters replay" in status.output
    listed = run_cli("dead-letters", "list", "--data-dir", str(tmp_path), "--limit", "3", "--json")
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [row["reason"] for row in rows] == ["mapping refused"] * 3
    assert rows[0]["at"] == "2023-11-14T22:13:20.029Z"  # newest first

    result = run_cli("dead-letters", "replay", "--data-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["pending"], report["replayed"], report["remaining"]) == (30, 30, 0)

    queue = EmbeddedQueue(settings.queue_dir)
    try:
        consumer = queue.consumer("check")
        replayed = []
        while (batch := consumer.poll(1000, 0.5)) is not None:
            replayed += batch.records
        assert [record.value for record in replayed] == payloads  # oldest first, byte for byte
        assert {record.key for record in replayed} == {b"billing"}
        consumer.close()
    finally:
        queue.close()
    again = run_cli("dead-letters", "replay", "--data-dir", str(tmp_path))
    assert again.exit_code == 0 and "replayed 0 of 0 pending" in again.output


def test_one_replay_per_group_at_a_time_on_the_embedded_queue(tmp_path: Path) -> None:
    queue = EmbeddedQueue(tmp_path / "queue")
    try:
        queue.dead_letter([DeadLetter(b"x", "refused", 1)])
        cursor = queue.dead_letter_cursor("replay")
        with pytest.raises(ReplayInProgress, match="being replayed already"):
            queue.dead_letter_cursor("replay")
        other = queue.dead_letter_cursor("another-group")
        assert other.pending == 1
        other.close()
        cursor.close()
        queue.dead_letter_cursor("replay").close()  # free again once closed
    finally:
        queue.close()


def test_payloads_of_another_writer_with_fields_of_the_wrong_type_are_dead_lettered(logflow: LogFlow) -> None:
    """Before: each of these crashed the processor (embedded or OpenSearch), on every retry of its batch."""
    ts = time.time_ns() // 1000
    foreign = [
        b'{"t":%d,"l":1,"s":5,"i":"x1","m":"a number as the service"}' % ts,
        b'{"t":%d,"l":1,"s":"svc","i":7,"m":"a number as the id"}' % ts,
        b'{"t":%d,"l":1,"s":"svc","i":"x3","m":["a list as the message"]}' % ts,
        b'{"t":"soon","l":1,"s":"svc","i":"x4","m":"a string as the timestamp"}',
        b'{"t":%d,"l":1,"s":"svc","i":"x5","m":"a list as the attributes","a":[1,2]}' % ts,
        b'{"t":%d,"l":1,"s":"svc","i":"x6","m":"flags that are no list","f":"x"}' % ts,
        b'{"t":%d,"l":1,"s":"svc","i":"x7","m":"a number as the host","h":3}' % ts,
        b'{"t":%d,"l":1,"s":"svc","i":"x8","m":"the year 3 million"}' % 10**20,
        b'{"t":%d,"l":1,"s":"svc","i":"x9","m":"the year 999"}' % (MIN_TIMESTAMP_US - 1),
        b'{"t":%d,"l":1,"s":"svc","i":"%s","m":"an id of 129 characters"}' % (ts, b"x" * 129),
        b'{"t":%d,"l":1,"s":"svc","i":"x10","m":"attributes 300 levels deep","a":{"k":%s}}'
        % (ts, b"[" * 300 + b"]" * 300),
        pack_document_record("x11", MAX_TIMESTAMP_US + 1, Level.INFO, b"svc", b'{"id":"x11","message":"year 10000"}'),
    ]
    logflow.runtime.queue.publish([QueueRecord(b"svc", payload) for payload in foreign])
    assert logflow.ingest({"message": "after them", "service": "ok"}).status_code == 202
    logflow.settle()
    assert total(logflow, service="ok") == 1 and total(logflow, service="svc") == 0
    assert all(thread.is_alive() for thread in logflow.threads)  # the processor carried on
    letters = logflow.runtime.queue.read_dead_letters(100)
    assert sorted(letter.value for letter in letters) == sorted(foreign)
    assert all(letter.reason.startswith("undecodable queue payload") for letter in letters)
    report = logflow.admin.post(REPLAY).json()
    assert (report["replayed"], report["unreadable"]) == (0, len(foreign))  # never put back: they cannot be stored
