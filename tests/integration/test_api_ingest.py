"""Ingest over HTTP, read back through search: exact counts, per-item results, every limit.

Runs against both shapes (embedded, and Kafka + OpenSearch + PostgreSQL + Redis).
"""

from __future__ import annotations

import gzip
import re
import time

import orjson

from logflow.backends.store.opensearch.mapping import encode_indexed_record
from logflow.domain.events import encode_record
from tests.conftest import LogFlow, loghub_events


def now_iso(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset_s)) + "Z"


def test_single_object_is_accepted_durable_and_readable(logflow: LogFlow) -> None:
    resp = logflow.ingest(
        {
            "message": "card declined for order 42",
            "level": "err",
            "service": "payment-service",
            "host": "pay-1",
            "trace_id": "t-1",
            "metadata": {"amount": 12.5},
        }
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == 1 and body["rejected"] == 0
    event_id = body["results"][0]["id"]
    logflow.settle()
    got = logflow.client.get(f"/api/v1/logs/{event_id}")
    assert got.status_code == 200
    log = got.json()
    assert (log["level"], log["service"], log["host"], log["trace_id"]) == ("ERROR", "payment-service", "pay-1", "t-1")
    assert log["metadata"] == {"amount": 12.5}
    assert log["timestamp"].endswith("Z")
    assert logflow.client.get("/api/v1/logs/does-not-exist").status_code == 404


def test_ingest_queues_events_in_the_form_the_store_asks_for(logflow: LogFlow) -> None:
    """OpenSearch takes its documents ready-made off the queue (format 3); other stores, format 2."""
    opensearch = logflow.runtime.store.kind == "opensearch"
    assert logflow.runtime.pipeline.encoder is (encode_indexed_record if opensearch else encode_record)


def test_array_ndjson_and_gzip_bodies(logflow: LogFlow) -> None:
    array = [{"message": f"array event {i}", "service": "a"} for i in range(5)]
    assert logflow.ingest(array).status_code == 202
    ndjson = b"\n".join(orjson.dumps({"message": f"ndjson event {i}", "service": "n"}) for i in range(7))
    resp = logflow.ingest(ndjson, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 202 and resp.json()["accepted"] == 7
    zipped = gzip.compress(ndjson.replace(b"ndjson", b"zipped"))
    resp = logflow.ingest(zipped, headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
    assert resp.status_code == 202 and resp.json()["accepted"] == 7
    logflow.settle()
    search = logflow.client.get
    assert search("/api/v1/logs/search", params={"query": "array"}).json()["total"] == 5
    assert search("/api/v1/logs/search", params={"query": "ndjson"}).json()["total"] == 7
    assert search("/api/v1/logs/search", params={"query": "zipped"}).json()["total"] == 7


def test_mixed_batch_keeps_the_valid_items(logflow: LogFlow) -> None:
    lines = [
        orjson.dumps({"message": "good one", "service": "mix"}),
        b"{not json",
        orjson.dumps({"message": "bad level", "level": "loud"}),
        orjson.dumps({"message": "good two", "service": "mix"}),
        orjson.dumps({"message": "from the future", "timestamp": now_iso(3 * 86400)}),
        orjson.dumps({"level": "INFO"}),
        b'{"message": "bad utf8 \xff\xfe here", "service": "mix"}',
    ]
    resp = logflow.ingest(b"\n".join(lines), headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 207, resp.text
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (3, 4)
    by_index = {r["index"]: r for r in body["results"]}
    assert by_index[1]["status"] == "rejected" and by_index[1]["line"] == 2 and "not valid JSON" in by_index[1]["error"]
    assert by_index[2]["code"] == 422 and "unknown level" in by_index[2]["error"]
    assert "future" in by_index[4]["error"]
    assert "missing 'message'" in by_index[5]["error"]
    assert by_index[6]["status"] == "accepted"
    logflow.settle()
    found = logflow.client.get("/api/v1/logs/search", params={"service": "mix"}).json()
    assert found["total"] == 3
    repaired = logflow.client.get(f"/api/v1/logs/{by_index[6]['id']}").json()
    assert repaired["flags"] == ["invalid_utf8"] and "\ufffd" in repaired["message"]


def test_all_rejected_is_422_and_body_errors(logflow: LogFlow) -> None:
    resp = logflow.ingest([{"level": "x"}, {"message": {"a": 1}}])
    assert resp.status_code == 422 and resp.json()["rejected"] == 2
    assert logflow.ingest(b"").status_code == 400
    assert logflow.ingest(b"[1, 2", headers={"Content-Type": "application/json"}).status_code == 400
    bad_gzip = logflow.ingest(b"not gzip", headers={"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400 and "gzip" in bad_gzip.json()["detail"]
    assert logflow.ingest(b"{}", headers={"Content-Encoding": "br"}).status_code == 415


def test_the_largest_events_the_api_accepts_are_stored(logflow: LogFlow) -> None:
    """At the event size limit, including the one whose stored document is 4x its size (a key of
    '=' signs, escaped in attr_kv): accepted, on Kafka too, and read back whole."""
    limits = logflow.runtime.pipeline.limits
    key = "=" * (limits.max_event_bytes - len(b'{"message":"","":""}'))
    long_message = "z" * (limits.max_event_bytes - len(b'{"message":""}'))
    lines = [orjson.dumps({"message": "", key: ""}), orjson.dumps({"message": long_message})]
    assert [len(line) for line in lines] == [limits.max_event_bytes] * 2
    resp = logflow.ingest(b"\n".join(lines), headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 202, resp.text
    ids = [result["id"] for result in resp.json()["results"]]
    logflow.settle()
    first, second = (logflow.client.get(f"/api/v1/logs/{event_id}").json() for event_id in ids)
    assert first["metadata"] == {key: ""} and second["message"] == long_message


def test_size_limits(logflow: LogFlow) -> None:
    limits = logflow.runtime.pipeline.limits
    too_big = b"x" * (limits.max_body_bytes + 1)
    assert logflow.ingest(too_big).status_code == 413
    bomb = gzip.compress(b" " * (limits.max_body_bytes + 10))
    resp = logflow.ingest(bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413 and "decompressed" in resp.json()["detail"]
    huge_line = orjson.dumps({"message": "y" * (limits.max_event_bytes + 10)})
    ok_line = orjson.dumps({"message": "small sibling", "service": "size"})
    resp = logflow.ingest(huge_line + b"\n" + ok_line, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 207
    assert resp.json()["results"][0]["code"] == 413
    deep = {"message": "deep", "a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}
    wide = {"message": "wide", **{f"k{i}": i for i in range(limits.max_fields + 1)}}
    resp = logflow.ingest([deep, wide, {"message": "fine", "service": "size"}])
    assert resp.status_code == 207
    errors = [r.get("error", "") for r in resp.json()["results"]]
    assert "deeper than" in errors[0] and "attribute fields" in errors[1]
    logflow.settle()
    assert logflow.client.get("/api/v1/logs/search", params={"service": "size"}).json()["total"] == 2


def test_loghub_round_trip_with_exact_counts(logflow: LogFlow) -> None:
    hdfs = loghub_events("HDFS")
    linux = loghub_events("Linux")
    for events in (hdfs, linux):
        resp = logflow.ingest(events)
        assert resp.status_code == 202, resp.text[:500]
    logflow.settle()
    get = logflow.client.get
    assert get("/api/v1/logs/search", params={"service": "hdfs", "limit": 1}).json()["total"] == 2000
    expected = sum(1 for e in hdfs if "packetresponder" in e["message"].lower())
    assert get("/api/v1/logs/search", params={"query": "PacketResponder"}).json()["total"] == expected
    both = sum(1 for e in linux if "authentication failure" in e["message"])
    assert get("/api/v1/logs/search", params={"query": '"authentication failure"'}).json()["total"] == both
    rhost = sum(
        1
        for e in linux
        if "authentication failure" in e["message"] and re.search(r"rhost=218\.188\.2\.4(?![0-9])", e["message"])
    )
    resp = get("/api/v1/logs/search", params={"query": '"authentication failure" 218.188.2.4', "service": "linux"})
    assert resp.json()["total"] == rhost
    hdfs_warn = sum(1 for e in hdfs if e.get("level") == "WARN")
    assert get("/api/v1/logs/search", params={"service": "hdfs", "level": "WARN"}).json()["total"] == hdfs_warn
    field = get("/api/v1/logs/search", params={"field": "event_id:E5", "service": "hdfs"}).json()
    assert field["total"] == sum(1 for e in hdfs if e["metadata"]["event_id"] == "E5")
