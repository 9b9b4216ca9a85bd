"""Ingest throughput per protocol: the same events through native NDJSON, ``_bulk``, OTLP and syslog.

Every protocol's requests (or frames) are encoded before the clock starts, so the figures compare
what LogFlow does with each wire format, not how fast the benchmark can encode. HTTP protocols count
as acknowledged when every request got its 2xx; syslog over TCP has no acknowledgement, so its
"acknowledged" time is when the server's ingest counter has taken every frame. All of them then
wait for the pipeline to reach zero lag (searchable).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from logflow.bench.measure import IngestResult, wait_for_zero_lag
from logflow.bench.workers import in_parallel
from logflow.domain.levels import parse_level

PROTOCOLS = ("native", "bulk", "otlp", "syslog-tcp")
_OTLP_SEVERITY = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "CRITICAL": 21}
_SYSLOG_SEVERITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "WARN": 4, "ERROR": 3, "CRITICAL": 2}


@dataclass
class ProtocolResult(IngestResult):
    protocol: str = ""
    wire_bytes: int = 0


def _level(event: dict[str, Any]) -> str:
    level = parse_level(event.get("level", "INFO"))
    return level.name if level is not None else "INFO"


def _micros(event: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp() * 1_000_000)


def encode_native(batch: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in batch) + b"\n"


def encode_bulk(batch: list[dict[str, Any]]) -> bytes:
    """Filebeat-style ECS documents (nested objects) behind ``create`` actions."""
    lines = []
    for e in batch:
        doc = {"@timestamp": e["timestamp"], "message": e["message"], "log": {"level": _level(e).lower()},
               "service": {"name": e["service"]}, "host": {"name": e["host"]}, **e.get("metadata", {})}
        lines += [b'{"create":{"_index":"logs"}}', orjson.dumps(doc)]
    return b"\n".join(lines) + b"\n"


def encode_otlp(batch: list[dict[str, Any]]) -> bytes:
    """One ResourceLogs per service and host, as an SDK batch exporter sends them."""
    request = ExportLogsServiceRequest()
    by_resource: dict[tuple[str, str], Any] = {}
    for e in batch:
        scope_logs = by_resource.get((e["service"], e["host"]))
        if scope_logs is None:
            resource_logs = request.resource_logs.add()
            for key in ("service", "host"):  # resource attributes, as the OTel semantic conventions put them
                resource_logs.resource.attributes.append(KeyValue(key=f"{key}.name", value=AnyValue(
                    string_value=e[key])))
            scope_logs = by_resource[(e["service"], e["host"])] = resource_logs.scope_logs.add()
        level = _level(e)
        record = LogRecord(time_unix_nano=_micros(e) * 1000, severity_number=_OTLP_SEVERITY[level],  # type: ignore[arg-type]
                           severity_text=level, body=AnyValue(string_value=e["message"]))
        for key, value in e.get("metadata", {}).items():
            record.attributes.append(KeyValue(key=key, value=AnyValue(string_value=str(value))))
        scope_logs.log_records.append(record)
    return request.SerializeToString()


def encode_syslog(batch: list[dict[str, Any]]) -> bytes:
    """RFC 5424 messages with RFC 6587 octet counting, as rsyslog's omfwd sends over TCP.

    Syslog has no TRACE severity: TRACE travels as debug (7) and is stored as DEBUG.
    """
    frames = []
    for e in batch:
        pri = 16 * 8 + _SYSLOG_SEVERITY[_level(e)]  # facility local0
        line = f"<{pri}>1 {e['timestamp']} {e['host']} {e['service']} - - - {e['message']}".encode()
        frames.append(b"%d %s" % (len(line), line))
    return b"".join(frames)


ENCODERS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    "native": encode_native, "bulk": encode_bulk, "otlp": encode_otlp, "syslog-tcp": encode_syslog,
}
_HTTP = {
    "native": ("/api/v1/ingest", "application/x-ndjson"),
    "bulk": ("/_bulk", "application/x-ndjson"),
    "otlp": ("/v1/logs", "application/x-protobuf"),
}


def _ingest_counter(client: httpx.Client) -> int:
    return int(client.get("/api/v1/pipeline/status").json()["ingest"]["accepted"])


def _post_all(url: str, path: str, media: str, bodies: list[bytes], concurrency: int,
              progress: Callable[[int], None], sizes: list[int]) -> None:
    def send(client: httpx.Client, index: int) -> None:
        while True:
            resp = client.post(path, content=bodies[index], headers={"Content-Type": media})
            if resp.status_code not in (429, 503, 507):
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))  # backpressure: wait as told, resend
        if resp.status_code >= 300 or (path == "/_bulk" and resp.json().get("errors")):
            raise RuntimeError(f"{path}: HTTP {resp.status_code}: {resp.text[:300]}")
        progress(sizes[index])

    in_parallel(len(bodies), concurrency, lambda: httpx.Client(base_url=url, timeout=120.0), send)


def _send_syslog(address: tuple[str, int], bodies: list[bytes], concurrency: int,
                 progress: Callable[[int], None], sizes: list[int]) -> None:
    """Stream the frames over ``concurrency`` TCP connections (TCP flow control is the backpressure)."""
    def send(sock: socket.socket, index: int) -> None:
        sock.sendall(bodies[index])
        progress(sizes[index])

    in_parallel(len(bodies), concurrency, lambda: socket.create_connection(address, timeout=120), send)


def run_protocol(protocol: str, url: str, syslog: tuple[str, int] | None, batches: list[list[dict[str, Any]]],
                 concurrency: int, progress: Callable[[int], None]) -> ProtocolResult:
    """Send every batch through ``protocol``; returns acknowledged and searchable times."""
    bodies = [ENCODERS[protocol](batch) for batch in batches]
    sizes = [len(batch) for batch in batches]
    events = sum(sizes)
    with httpx.Client(base_url=url, timeout=30.0) as client:
        wait_for_zero_lag(client)
        before = _ingest_counter(client)
        started = time.perf_counter()
        if protocol == "syslog-tcp":
            if syslog is None:
                raise RuntimeError("syslog-tcp needs the syslog listener")
            _send_syslog(syslog, bodies, concurrency, progress, sizes)
            while _ingest_counter(client) - before < events:
                time.sleep(0.02)
        else:
            path, media = _HTTP[protocol]
            _post_all(url, path, media, bodies, concurrency, progress, sizes)
        acked = time.perf_counter() - started
        wait_for_zero_lag(client)
        searchable = time.perf_counter() - started
        taken = _ingest_counter(client) - before
    if taken != events:
        raise RuntimeError(f"{protocol}: the server accepted {taken} of {events} events")
    return ProtocolResult(events, acked, searchable, rejected=0, retries=0, protocol=protocol,
                          wire_bytes=sum(len(b) for b in bodies))
