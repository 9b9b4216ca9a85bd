"""OTLP/HTTP logs (``POST /v1/logs``) with the official OpenTelemetry Python SDK and raw requests.

Runs against both shapes; every test reads the events back through the search API and compares
fields and counts exactly.
"""

from __future__ import annotations

import base64
import gzip
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from logflow.domain.events import format_timestamp
from logflow.settings import Settings
from tests.conftest import LogFlow, loghub_rows, start_logflow, stop_logflow
from tests.serving import serve_app

PROTOBUF = {"Content-Type": "application/x-protobuf"}
LEVELS = [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARN"),
          (logging.ERROR, "ERROR"), (logging.CRITICAL, "CRITICAL")]


def search(logflow: LogFlow, **params: Any) -> dict[str, Any]:
    resp = logflow.client.get("/api/v1/logs/search", params={"limit": 1000, "sort": "asc", **params})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def post(logflow: LogFlow, body: bytes, headers: dict[str, str] | None = None, key: str | None = None) -> Any:
    auth = {"Authorization": f"Bearer {key or logflow.ingest_key}"}
    return logflow.client.post("/v1/logs", content=body, headers={**PROTOBUF, **auth, **(headers or {})})


def kv(key: str, value: Any) -> KeyValue:
    """A protobuf KeyValue from a plain Python value (test-side encoder)."""
    any_value = AnyValue()
    if isinstance(value, str):
        any_value.string_value = value
    elif isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    else:
        any_value.double_value = value
    return KeyValue(key=key, value=any_value)


def request_of(records: list[LogRecord], service: str) -> bytes:
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource={"attributes": [kv("service.name", service)]},
        scope_logs=[ScopeLogs(log_records=records)],
    )]).SerializeToString()


# -- the official SDK ----------------------------------------------------------------------------------
class _Created(logging.Handler):
    """Remembers each record's creation time, from which the SDK derives time_unix_nano."""

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[int, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.created[int(getattr(record, "loghub.line"))] = record.created


@pytest.fixture
def sdk_logger(logflow: LogFlow) -> Iterator[tuple[logging.Logger, LoggerProvider, _Created]]:
    """A stdlib logger whose records go through the OTel SDK's LoggingHandler to LogFlow on a real socket."""
    with serve_app(logflow.client.app) as url:
        provider = LoggerProvider(
            resource=Resource.create({"service.name": "hdfs-datanode", "host.name": "dn-17",
                                      "deployment.environment": "ci"}),
            shutdown_on_exit=False,
        )
        exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs",
                                   headers={"Authorization": f"Bearer {logflow.ingest_key}"})
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=64))
        with warnings.catch_warnings():  # the SDK's own handler is deprecated in favour of a contrib package
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
        logger = logging.getLogger(f"loghub.hdfs.{id(provider)}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        created = _Created()
        logger.addHandler(handler)
        logger.addHandler(created)
        try:
            yield logger, provider, created
        finally:
            logger.removeHandler(handler)
            logger.removeHandler(created)
            provider.shutdown()


def test_official_sdk_exports_loghub_lines(logflow: LogFlow, sdk_logger: tuple[logging.Logger, LoggerProvider,
                                                                                 _Created]) -> None:
    logger, provider, created = sdk_logger
    rows = loghub_rows("HDFS")[:300]
    tracer = TracerProvider().get_tracer("replication")
    spans: dict[int, tuple[str, str]] = {}

    def emit(i: int, row: dict[str, str]) -> None:
        level = LEVELS[i % len(LEVELS)][0]
        extra = {"loghub.event_id": row["EventId"], "loghub.line": int(row["LineId"]), "block.replicated": i % 2 == 0}
        logger.log(level, "%s", row["Content"], extra=extra)

    for i, row in enumerate(rows[:100]):
        emit(i, row)
    with tracer.start_as_current_span("replicate-block") as span:
        context = span.get_span_context()
        for i, row in enumerate(rows[100:150], start=100):
            emit(i, row)
            spans[int(row["LineId"])] = (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    for i, row in enumerate(rows[150:], start=150):
        emit(i, row)
    assert provider.force_flush(timeout_millis=30_000)

    logflow.settle()
    found = search(logflow, service="hdfs-datanode")
    assert found["total"] == len(rows)
    by_line = {log["metadata"]["loghub.line"]: log for log in found["logs"]}
    assert len(by_line) == len(rows)
    for i, row in enumerate(rows):
        line = int(row["LineId"])
        log = by_line[line]
        trace_id, span_id = spans.get(line, (None, None))
        assert (log["message"], log["level"], log["service"], log["host"], log["trace_id"], log["span_id"]) == (
            row["Content"], LEVELS[i % len(LEVELS)][1], "hdfs-datanode", "dn-17", trace_id, span_id)
        assert log["timestamp"] == format_timestamp(int(created.created[line] * 1e9) // 1000)
        meta = log["metadata"]
        assert meta["loghub.event_id"] == row["EventId"] and meta["block.replicated"] is (i % 2 == 0)
        assert meta["deployment.environment"] == "ci" and meta["telemetry.sdk.language"] == "python"
        assert meta["otel.scope.name"] == logger.name and meta["code.function.name"] == "emit"
        assert "service.name" not in meta and "host.name" not in meta
    # Dotted attribute keys work in field filters, and trace ids in the model field.
    event_id, wanted = Counter(row["EventId"] for row in rows).most_common(1)[0]
    assert search(logflow, field=f"loghub.event_id:{event_id}")["total"] == wanted
    errors = search(logflow, service="hdfs-datanode", level="ERROR")
    assert errors["total"] == sum(1 for i in range(len(rows)) if i % 5 == 3)


# -- OTLP/JSON ----------------------------------------------------------------------------------------
def jkv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def test_otlp_json_maps_every_field(logflow: LogFlow) -> None:
    rows = loghub_rows("OpenStack")[:5]
    now = time.time_ns()
    trace = "5B8EFFF798038103D269B633813FC60C"  # OTLP/JSON ids are hex (case-insensitive), not base64
    doc = {
        "resourceLogs": [{
            "resource": {"attributes": [jkv("service.name", {"stringValue": "nova-api"}),
                                        jkv("host.name", {"stringValue": "ctl-2"}),
                                        jkv("cloud.region", {"stringValue": "eu-1"})]},
            "scopeLogs": [{
                "scope": {"name": "nova.osapi", "version": "2.1.0"},
                "logRecords": [
                    {"timeUnixNano": str(now - 3_000_000_123), "severityNumber": 17, "severityText": "Error",
                     "body": {"stringValue": rows[0]["Content"]}, "traceId": trace, "spanId": "eee19b7ec3c1b174",
                     "futureField": {"ignored": True},
                     "attributes": [jkv("http.status_code", {"intValue": "503"}), jkv("retry", {"boolValue": True}),
                                    jkv("ratio", {"doubleValue": 0.25}),
                                    jkv("time", {"stringValue": "not the timestamp"}),
                                    jkv("tags", {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 2}]}}),
                                    jkv("raw", {"bytesValue": base64.b64encode(b"\x00\x01").decode()})]},
                    {"observedTimeUnixNano": str(now - 2_000_000_000), "severityNumber": "SEVERITY_NUMBER_WARN2",
                     "body": {"kvlistValue": {"values": [jkv("user", {"stringValue": "u1"}),
                                                         jkv("count", {"intValue": 3})]}}},
                    {"severityText": "notice", "body": {"stringValue": rows[2]["Content"]}, "traceId": "",
                     "spanId": ""},
                    {"timeUnixNano": str(now - 1_000_000_000), "severityText": "LOUD",
                     "body": {"stringValue": rows[3]["Content"]}},
                    {"timeUnixNano": str(now), "body": {"stringValue": rows[4]["Content"]}, "traceId": "not-hex"},
                ],
            }],
        }],
    }
    before = time.time_ns() // 1000
    resp = post(logflow, gzip.compress(orjson.dumps(doc)),
                {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    after = time.time_ns() // 1000
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    partial = resp.json()["partialSuccess"]
    assert int(partial["rejectedLogRecords"]) == 1
    assert "logRecords[4]" in partial["errorMessage"] and "traceId must be 32 hex digits" in partial["errorMessage"]

    logflow.settle()
    logs = search(logflow, service="nova-api")["logs"]
    assert len(logs) == 4
    by_message = {log["message"]: log for log in logs}
    scope = {"cloud.region": "eu-1", "otel.scope.name": "nova.osapi", "otel.scope.version": "2.1.0"}
    first = by_message[rows[0]["Content"]]
    assert (first["level"], first["host"], first["trace_id"], first["span_id"], first["timestamp"]) == (
        "ERROR", "ctl-2", trace.lower(), "eee19b7ec3c1b174", format_timestamp((now - 3_000_000_123) // 1000))
    assert first["metadata"] == {**scope, "http.status_code": 503, "retry": True, "ratio": 0.25,
                                 "time": "not the timestamp", "tags": ["a", 2], "raw": "AAE="}
    structured = by_message['{"user":"u1","count":3}']
    assert structured["level"] == "WARN" and structured["timestamp"] == format_timestamp((now - 2_000_000_000) // 1000)
    assert structured["metadata"] == {**scope, "body": {"user": "u1", "count": 3}}
    received = by_message[rows[2]["Content"]]
    assert received["level"] == "INFO" and received["trace_id"] is None and received["metadata"] == scope
    assert format_timestamp(before) <= received["timestamp"] <= format_timestamp(after)
    loud = by_message[rows[3]["Content"]]
    assert loud["level"] == "INFO" and loud["metadata"] == {**scope, "severity_text": "LOUD"}

    # A fully accepted JSON export answers an empty ExportLogsServiceResponse.
    ok = post(logflow, orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "json ok"}}]}]}]}), {"Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json() == {}


# -- partial success, malformed bodies, auth, backpressure ------------------------------------------------
def test_partial_success_keeps_the_valid_records(logflow: LogFlow) -> None:
    rows = loghub_rows("OpenSSH")[:3]
    now = time.time_ns()
    valid = [LogRecord(time_unix_nano=now - i, severity_number=9, body=AnyValue(string_value=row["Content"]))
             for i, row in enumerate(rows)]
    future = LogRecord(time_unix_nano=now + 3 * 86400 * 10**9, body=AnyValue(string_value="from the future"))
    crowded = LogRecord(time_unix_nano=now, body=AnyValue(string_value="too many attributes"),
                        attributes=[kv(f"a{i}", i) for i in range(201)])
    short_trace = LogRecord(time_unix_nano=now, body=AnyValue(string_value="short trace"), trace_id=b"\x01" * 5)
    body = request_of([valid[0], future, valid[1], crowded, short_trace, valid[2]], "sshd")
    resp = post(logflow, body)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse.FromString(resp.content)
    assert answer.partial_success.rejected_log_records == 3
    message = answer.partial_success.error_message
    for expected in ("logRecords[1]: 'timestamp' is more than", "logRecords[3]: event has more than 200 attribute",
                     "logRecords[4]: trace_id must be 16 bytes"):
        assert expected in message, message
    logflow.settle()
    stored = sorted(log["message"] for log in search(logflow, service="sshd")["logs"])
    assert stored == sorted(r["Content"] for r in rows)

    # All accepted: the response leaves partial_success unset.
    resp = post(logflow, request_of([LogRecord(body=AnyValue(string_value="fine"))], "sshd"))
    assert resp.status_code == 200
    assert not ExportLogsServiceResponse.FromString(resp.content).HasField("partial_success")


def test_malformed_bodies_get_an_rpc_status(logflow: LogFlow) -> None:
    bad = post(logflow, b"\x0a\xff\xff\xff")
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/x-protobuf"
    status = Status.FromString(bad.content)
    assert status.code == 3 and "ExportLogsServiceRequest" in status.message
    for raw in (b"{not json", b'{"resourceLogs": 5}'):
        resp = post(logflow, raw, {"Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.headers["content-type"] == "application/json", resp.text
        assert resp.json()["code"] == 3 and resp.json()["message"]
    gz = post(logflow, b"not gzip at all", {"Content-Encoding": "gzip"})
    assert gz.status_code == 400 and "gzip" in Status.FromString(gz.content).message
    assert post(logflow, b"x", {"Content-Type": "text/plain"}).status_code == 415
    assert post(logflow, b"x", {"Content-Encoding": "br"}).status_code == 415
    # Nothing of those was stored; a well-formed export right after is.
    assert post(logflow, request_of([LogRecord(body=AnyValue(string_value="after garbage"))], "otlp-bad")
                ).status_code == 200
    logflow.settle()
    assert [log["message"] for log in search(logflow)["logs"]] == ["after garbage"]


def test_ingest_credentials(logflow: LogFlow) -> None:
    body = request_of([LogRecord(body=AnyValue(string_value="credential check"))], "otlp-auth")
    anonymous = logflow.client.post("/v1/logs", content=body, headers=PROTOBUF)
    assert anonymous.status_code == 401 and Status.FromString(anonymous.content).code == 16
    assert post(logflow, body, key="lf_" + "x" * 40).status_code == 401
    reader = logflow.api_key("admin", ["read"])
    forbidden = post(logflow, body, key=reader)
    assert forbidden.status_code == 403 and Status.FromString(forbidden.content).code == 7
    basic = base64.b64encode(f"otel:{logflow.ingest_key}".encode()).decode()
    assert logflow.client.post("/v1/logs", content=body, headers={**PROTOBUF, "Authorization": f"Basic {basic}"}
                               ).status_code == 200
    assert logflow.client.post("/v1/logs", content=body, headers={**PROTOBUF, "X-API-Key": logflow.ingest_key}
                               ).status_code == 200
    logflow.settle()
    assert search(logflow, service="otlp-auth")["total"] == 2


def test_full_queue_is_a_retryable_503(make_settings: Callable[..., Settings]) -> None:
    """Embedded shape only: the embedded queue's backlog bound refuses (Kafka has no such bound)."""
    flow = start_logflow(make_settings(queue_max_backlog_bytes=1024 * 1024), processors=0)
    try:
        filler = "x" * 4000
        body = request_of([LogRecord(body=AnyValue(string_value=f"{filler} {i}")) for i in range(120)], "full")
        statuses = []
        for _ in range(6):  # ~0.5 MB per request against a 1 MiB backlog with no consumer
            statuses.append(post(flow, body).status_code)
            if statuses[-1] != 200:
                break
        assert statuses[0] == 200 and statuses[-1] == 503, statuses
        refused = post(flow, body)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert Status.FromString(refused.content).code == 14  # UNAVAILABLE: exporters retry
    finally:
        stop_logflow(flow)


def test_spent_rate_limit_is_a_retryable_429(make_settings: Callable[..., Settings]) -> None:
    flow = start_logflow(make_settings(rate_api_per_minute=3), processors=0)
    try:
        body = orjson.dumps({"resourceLogs": []})
        statuses = [post(flow, body, {"Content-Type": "application/json"}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = post(flow, body, {"Content-Type": "application/json"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["code"] == 8
    finally:
        stop_logflow(flow)
