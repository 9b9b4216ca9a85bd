"""Loki push API (``POST /loki/api/v1/push``): JSON, snappy protobuf and a real Loki logging client.

The protobuf bodies are encoded here with protobuf's own runtime (a descriptor built from Loki's
push.proto), independently of LogFlow's hand-written decoder. Runs against both shapes; events are
read back through the search API and compared exactly.
"""

from __future__ import annotations

import base64
import gzip
import logging
import time
from collections.abc import Callable
from typing import Any

import cramjam
import orjson
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message

from logflow.domain.events import format_timestamp
from logflow.ingest.protocols.loki import LabelError, parse_labels
from logflow.settings import Settings
from tests.conftest import LogFlow, loghub_rows, start_logflow, stop_logflow
from tests.serving import serve_app

PUSH = "/loki/api/v1/push"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def basic(key: str) -> dict[str, str]:
    """Promtail/Grafana Agent style credentials: the API key as the Basic password."""
    return {"Authorization": "Basic " + base64.b64encode(f"promtail:{key}".encode()).decode()}


def push(logflow: LogFlow, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return logflow.client.post(PUSH, content=body, headers={**basic(logflow.ingest_key), **(headers or {})})


def search(logflow: LogFlow, **params: Any) -> list[dict[str, Any]]:
    resp = logflow.client.get("/api/v1/logs/search", params={"limit": 1000, "sort": "asc", **params})
    assert resp.status_code == 200, resp.text
    logs: list[dict[str, Any]] = resp.json()["logs"]
    return logs


def ts(nanos: int) -> str:
    return format_timestamp(nanos // 1000)


# -- an independent protobuf encoder: Loki's push.proto as a runtime descriptor ---------------------------
def _push_messages() -> dict[str, type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    timestamp_file = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp_file)
    pool.Add(timestamp_file)
    proto = descriptor_pb2.FileDescriptorProto(name="pkg/push/push.proto", package="logproto", syntax="proto3",
                                               dependency=["google/protobuf/timestamp.proto"])
    field = descriptor_pb2.FieldDescriptorProto
    schema = {
        "PushRequest": [("streams", 1, field.TYPE_MESSAGE, ".logproto.StreamAdapter", True)],
        "StreamAdapter": [("labels", 1, field.TYPE_STRING, "", False),
                          ("entries", 2, field.TYPE_MESSAGE, ".logproto.EntryAdapter", True),
                          ("hash", 3, field.TYPE_UINT64, "", False)],
        "EntryAdapter": [("timestamp", 1, field.TYPE_MESSAGE, ".google.protobuf.Timestamp", False),
                         ("line", 2, field.TYPE_STRING, "", False),
                         ("structuredMetadata", 3, field.TYPE_MESSAGE, ".logproto.LabelPairAdapter", True)],
        "LabelPairAdapter": [("name", 1, field.TYPE_STRING, "", False), ("value", 2, field.TYPE_STRING, "", False)],
    }
    for name, fields in schema.items():
        message = proto.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            message.field.add(name=fname, number=number, type=ftype, type_name=type_name or None,
                              label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL)
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"logproto.{name}"))
            for name in schema}


PB = _push_messages()


def proto_push(streams: list[tuple[str, list[tuple[int, str, dict[str, str]]]]]) -> bytes:
    """A snappy-compressed (block format) PushRequest, as Promtail sends it."""
    request: Any = PB["PushRequest"]()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels)
        for nanos, line, metadata in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(nanos, 1_000_000_000)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


# -- label sets ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ('{a="b"}', {"a": "b"}),
    (' { job = "x" ,  host="h-1", } ', {"job": "x", "host": "h-1"}),
    (r'{a="q\"uote", b="back\\slash", c="tab\there", d="\u00e9\x41\101", e="\xc3\xa9"}',
     {"a": 'q"uote', "b": "back\\slash", "c": "tab\there", "d": "\u00e9AA", "e": "\u00e9"}),
    ("{a=`raw\\n`, b='single'}", {"a": "raw\\n", "b": "single"}),
    ('{a="", b="kept"}', {"b": "kept"}),
    ('{"service.name"="checkout", _x1="y"}', {"service.name": "checkout", "_x1": "y"}),
    ('{msg="a}b,c=d"}', {"msg": "a}b,c=d"}),
])
def test_label_sets_parse_like_loki(text: str, expected: dict[str, str]) -> None:
    assert parse_labels(text) == expected


@pytest.mark.parametrize("text", [
    "", 'a="b"', '{a="b"', "{a=b}", '{a!="b"}', '{a=~"b"}', '{a="b", a="c"}', "{}", '{a=""}', '{1a="b"}',
    r'{a="\q"}', '{a="b"} x', '{a="b" c="d"}', '{a="unterminated}', r'{a="\ud800"}',
])
def test_invalid_label_sets_are_refused(text: str) -> None:
    with pytest.raises(LabelError):
        parse_labels(text)


# -- JSON ---------------------------------------------------------------------------------------------------
def test_json_push_maps_labels_lines_and_metadata(logflow: LogFlow) -> None:
    apache = loghub_rows("Apache")[:20]
    proxifier = loghub_rows("Proxifier")[:10]
    now = time.time_ns()
    apache_ns = [now - 60_000_000_000 + i * 1_000_000_001 for i in range(len(apache))]
    proxy_ns = [now - 30_000_000_000 + i * 1_000_007 for i in range(len(proxifier))]
    doc = {"streams": [
        {"stream": {"service_name": "apache", "job": "varlogs", "level": "error", "host": "web-1", "env": "prod"},
         "values": [[str(n), row["Content"], {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "user": f"u{i}"}]
                    if i % 2 else [str(n), row["Content"]]
                    for i, (n, row) in enumerate(zip(apache_ns, apache, strict=True))]},
        {"stream": {"app": "proxifier", "detected_level": "warn", "instance": "10.0.0.5:9100", "msg": "a label"},
         "values": [[str(n), row["Content"]] for n, row in zip(proxy_ns, proxifier, strict=True)]},
        {"stream": {"job": "zookeeper", "level": "unknown"},
         "values": [[str(now), '{"json":"line","n":1}']]},
    ]}
    resp = push(logflow, gzip.compress(orjson.dumps(doc)), {"Content-Type": "application/json",
                                                            "Content-Encoding": "gzip"})
    assert resp.status_code == 204 and resp.content == b"", resp.text

    logflow.settle()
    got = search(logflow, service="apache")
    assert len(got) == len(apache)
    for i, (log, nanos, row) in enumerate(zip(got, apache_ns, apache, strict=True)):
        meta = {"job": "varlogs", "env": "prod", **({"user": f"u{i}"} if i % 2 else {})}
        trace = "4bf92f3577b34da6a3ce929d0e0e4736" if i % 2 else None
        assert (log["message"], log["timestamp"], log["level"], log["host"], log["trace_id"], log["metadata"]) == (
            row["Content"], ts(nanos), "ERROR", "web-1", trace, meta)
    got = search(logflow, service="proxifier")
    assert [(g["message"], g["timestamp"], g["level"], g["host"], g["metadata"]) for g in got] == [
        (row["Content"], ts(n), "WARN", "10.0.0.5:9100", {"msg": "a label"})
        for n, row in zip(proxy_ns, proxifier, strict=True)]
    zk = search(logflow, service="zookeeper")
    # A JSON line stays the message, as in Loki; an unknown level label stays a label.
    assert [(z["message"], z["level"], z["metadata"]) for z in zk] == [
        ('{"json":"line","n":1}', "INFO", {"level": "unknown"})]
    assert len(search(logflow)) == len(apache) + len(proxifier) + 1


# -- snappy protobuf ----------------------------------------------------------------------------------------
def test_snappy_protobuf_push(logflow: LogFlow) -> None:
    rows = loghub_rows("Zookeeper")[:40]
    now = time.time_ns()
    nanos = [now - 50_000_000_000 + i * 987_654_321 for i in range(len(rows))]
    labels = r'{service_name="zookeeper", hostname="zk-3", level="WARN", path="C:\\zk\\\"data\"", note="a\nb"}'
    body = proto_push([
        (labels, [(n, row["Content"], {"span_id": "00f067aa0ba902b7", "thread": "main"} if i < 5 else {})
                  for i, (n, row) in enumerate(zip(nanos, rows, strict=True))]),
        ('{job="hadoop", "k8s.pod"="p-1"}', [(now, "ünïcödé line ✓", {})]),
    ])
    resp = push(logflow, body, PROTOBUF)
    assert resp.status_code == 204, resp.text
    logflow.settle()
    got = search(logflow, service="zookeeper")
    assert len(got) == len(rows)
    for i, (log, n, row) in enumerate(zip(got, nanos, rows, strict=True)):
        meta = {"path": 'C:\\zk\\"data"', "note": "a\nb", **({"thread": "main"} if i < 5 else {})}
        assert (log["message"], log["timestamp"], log["level"], log["host"], log["span_id"], log["metadata"]) == (
            row["Content"], ts(n), "WARN", "zk-3", "00f067aa0ba902b7" if i < 5 else None, meta)
    hadoop = search(logflow, service="hadoop")
    assert [(h["message"], h["timestamp"], h["metadata"]) for h in hadoop] == [
        ("ünïcödé line ✓", ts(now), {"k8s.pod": "p-1"})]


# -- malformed bodies and partial rejection -------------------------------------------------------------------
def test_malformed_bodies_are_a_plain_400(logflow: LogFlow) -> None:
    cases = [
        (b"{not json", {"Content-Type": "application/json"}),
        (b'{"streams": 5}', {"Content-Type": "application/json"}),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", PROTOBUF),  # not snappy
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), PROTOBUF),  # snappy, but not a PushRequest
        (b"garbage", {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    ]
    for body, headers in cases:
        resp = push(logflow, body, headers)
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("text/plain") and resp.text.strip()
    unsupported = push(logflow, b"{}", {"Content-Type": "application/json", "Content-Encoding": "br"})
    assert unsupported.status_code == 415
    logflow.settle()
    assert search(logflow) == []


def test_rejected_entries_get_a_400_and_valid_siblings_are_stored(logflow: LogFlow) -> None:
    rows = loghub_rows("Linux")[:6]
    now = time.time_ns()
    doc = {"streams": [
        {"stream": {"service": "linux", "host": "lx-1"}, "values": [
            [str(now - 3_000_000_000), rows[0]["Content"]],
            [str(now - 30 * 86400 * 10**9), "far too old"],
            [str(now - 2_000_000_000), rows[1]["Content"]],
            [str(now + 3 * 86400 * 10**9), "from the future"],
            ["yesterday", "not a timestamp"],
            [str(now - 1_000_000_000), rows[2]["Content"]],
        ]},
        {"stream": {}, "values": [[str(now), "no labels"]]},
    ]}
    resp = push(logflow, orjson.dumps(doc), {"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert text.startswith("4 of 7 entries rejected, 3 stored"), text
    for expected in ("entry 1: 'timestamp' is older than the retention window", "entry 3: 'timestamp' is more than",
                     "entry 4: timestamp must be a string of Unix epoch nanoseconds",
                     "at least one label pair is required"):
        assert expected in text, text
    # The same in protobuf: a stream whose label text does not parse is refused, its sibling stored.
    body = proto_push([('{service="linux", host=', [(now, "broken labels", {})]),
                       ('{service="linux", host="lx-1"}', [(now - i, rows[3 + i]["Content"], {}) for i in range(3)])])
    resp = push(logflow, body, PROTOBUF)
    assert resp.status_code == 400 and "error parsing labels" in resp.text and "1 of 4 entries rejected" in resp.text
    logflow.settle()
    stored = search(logflow, service="linux")
    assert sorted(log["message"] for log in stored) == sorted(row["Content"] for row in rows)
    assert {log["host"] for log in stored} == {"lx-1"}


# -- credentials, backpressure, a real client ---------------------------------------------------------------------
def test_ingest_credentials(logflow: LogFlow) -> None:
    body = orjson.dumps({"streams": [{"stream": {"job": "loki-auth"}, "values": [[str(time.time_ns()), "auth"]]}]})
    json_type = {"Content-Type": "application/json"}
    anonymous = logflow.client.post(PUSH, content=body, headers=json_type)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert anonymous.headers["content-type"].startswith("text/plain")
    assert logflow.client.post(PUSH, content=body, headers={**json_type, **basic("lf_" + "x" * 40)}).status_code == 401
    reader = logflow.api_key("admin", ["read"])
    assert logflow.client.post(PUSH, content=body, headers={**json_type, **basic(reader)}).status_code == 403
    assert push(logflow, body, json_type).status_code == 204
    bearer = {**json_type, "Authorization": f"Bearer {logflow.ingest_key}"}
    assert logflow.client.post(PUSH, content=body, headers=bearer).status_code == 204
    logflow.settle()
    assert len(search(logflow, service="loki-auth")) == 2


def test_full_queue_is_429_with_retry_after(make_settings: Callable[..., Settings]) -> None:
    """Embedded shape only: the embedded queue's backlog bound refuses (Kafka has no such bound)."""
    flow = start_logflow(make_settings(queue_max_backlog_bytes=1024 * 1024), processors=0)
    try:
        filler = "x" * 4000
        body = proto_push([('{job="full"}', [(time.time_ns() - i, f"{filler} {i}", {}) for i in range(120)])])
        statuses = []
        for _ in range(6):  # ~0.5 MB per request against a 1 MiB backlog with no consumer
            statuses.append(push(flow, body, PROTOBUF).status_code)
            if statuses[-1] != 204:
                break
        assert statuses[0] == 204 and statuses[-1] == 429, statuses
        refused = push(flow, body, PROTOBUF)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.text
    finally:
        stop_logflow(flow)


def test_python_logging_loki_client(logflow: LogFlow) -> None:
    """python-logging-loki, a real Loki client: JSON pushes with Basic auth, expecting 204."""
    import logging_loki

    rows = loghub_rows("Android")[:30]
    levels = [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARN"),
              (logging.ERROR, "ERROR"), (logging.CRITICAL, "CRITICAL")]
    with serve_app(logflow.client.app) as url:
        handler = logging_loki.LokiHandler(url=f"{url}{PUSH}", tags={"service_name": "android-app"},
                                           auth=("promtail", logflow.ingest_key), version="1")
        failures: list[logging.LogRecord] = []
        handler.handleError = failures.append  # type: ignore[method-assign]  # a non-204 lands here
        logger = logging.getLogger(f"loghub.android.{id(handler)}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(handler)
        before = time.time_ns() // 1000
        try:
            for i, row in enumerate(rows):
                logger.log(levels[i % 5][0], row["Content"], extra={"tags": {"component": row["Component"]}})
        finally:
            logger.removeHandler(handler)
            handler.close()
        after = time.time_ns() // 1000
    assert failures == []
    logflow.settle()
    got = search(logflow, service="android-app")
    assert len(got) == len(rows)
    by_message: dict[str, list[dict[str, Any]]] = {}
    for log in got:
        by_message.setdefault(log["message"], []).append(log)
    for i, row in enumerate(rows):
        log = by_message[row["Content"]].pop(0)
        assert (log["level"], log["metadata"]) == (levels[i % 5][1], {"logger": logger.name,
                                                                      "component": row["Component"]})
        assert format_timestamp(before) <= log["timestamp"] <= format_timestamp(after)
