"""OpenTelemetry OTLP/HTTP logs: ``ExportLogsServiceRequest`` in (protobuf or OTLP/JSON), items out.

Each ``LogRecord`` becomes one item for the ingest pipeline (mapping in docs/protocols/otlp.md):
body → message, time (or observed time) → timestamp, severity number (else text) → level,
resource ``service.name``/``host.name`` → service/host, trace and span ids as lower-case hex, and
every other resource, scope and record attribute kept as an attribute under its OTel name.
Attributes travel in the item's ``metadata`` so that an OTel key that happens to be one of
LogFlow's model names (``time``, ``msg``, ``id``) stays an attribute instead of being taken as one.

A record LogFlow cannot store is rejected on its own and reported through OTLP's
``partial_success``; only a body that cannot be decoded at all is a 400.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from logflow.domain.events import format_timestamp
from logflow.domain.levels import Level, parse_level
from logflow.ingest.decode import BodyError, DecodedItem
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError
from logflow.ingest.pipeline import IngestOutcome
from logflow.ingest.protocols.protowire import rpc_status

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
# OTLP severity numbers come in groups of four per level (logs data model, "Field: SeverityNumber").
_SEVERITY_LEVELS = (Level.TRACE, Level.DEBUG, Level.INFO, Level.WARN, Level.ERROR, Level.CRITICAL)
# google.rpc.Code for the HTTP statuses LogFlow answers (the Status body carries a gRPC code).
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 3, 415: 3, 429: 8, 500: 13, 503: 14}
_MAX_VALUE_DEPTH = 64  # AnyValue nesting beyond this is refused per record (normalize caps far lower)
_MAX_REASONS = 5  # rejection reasons spelled out in partial_success.error_message


class _TooDeep(Exception):
    pass


def media_type(content_type: str | None) -> str | None:
    """``PROTOBUF`` or ``JSON`` for a request's Content-Type, None when OTLP does not define it."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _PROTOBUF_TYPES:
        return PROTOBUF
    if media == JSON:
        return JSON
    return None


# -- decoding ---------------------------------------------------------------------------------------
def _hex_to_b64(value: str, size: int) -> str | None:
    """OTLP/JSON spells trace/span ids in hex, protobuf JSON in base64: convert for json_format."""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size:
        return None
    return base64.b64encode(raw).decode("ascii")


def _records_in(doc: object) -> Iterator[dict[str, Any]]:
    """The log record objects of an OTLP/JSON document in protobuf order (shape errors are left to
    json_format, which names them)."""
    if not isinstance(doc, dict):
        return
    for resource_logs in _list(doc, "resourceLogs", "resource_logs"):
        for scope_logs in _list(resource_logs, "scopeLogs", "scope_logs"):
            for record in _list(scope_logs, "logRecords", "log_records"):
                if isinstance(record, dict):
                    yield record


def _list(obj: object, camel: str, snake: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    value = obj.get(camel, obj.get(snake))
    return value if isinstance(value, list) else []


def _parse_json(data: bytes) -> tuple[ExportLogsServiceRequest, dict[int, ItemError]]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"body is not valid JSON: {exc}") from None
    # Ids that are not hex of the right length reject their record only (partial success), so
    # they are removed before json_format sees them and remembered by the record's position.
    bad_ids: dict[int, ItemError] = {}
    for index, record in enumerate(_records_in(doc)):
        for camel, snake, size in (("traceId", "trace_id", 16), ("spanId", "span_id", 8)):
            values = [record.pop(key) for key in (camel, snake) if key in record]
            for value in values:
                if value in ("", None):
                    continue
                converted = _hex_to_b64(value, size) if isinstance(value, str) else None
                if converted is None:
                    bad_ids[index] = ItemError(400, f"{camel} must be {size * 2} hex digits, got {str(value)[:40]!r}")
                else:
                    record[snake] = converted
    request = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise BodyError(400, f"body is not an OTLP/JSON ExportLogsServiceRequest: {exc}") from None
    return request, bad_ids


def parse_request(data: bytes, media: str) -> tuple[ExportLogsServiceRequest, dict[int, ItemError]]:
    """The decoded request plus per-record errors found while decoding (by record position).

    Raises BodyError(400) when the body is not an ``ExportLogsServiceRequest`` in ``media``.
    """
    if media == JSON:
        return _parse_json(data)
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise BodyError(400, f"body is not a protobuf ExportLogsServiceRequest: {exc}") from None
    return request, {}


# -- mapping ----------------------------------------------------------------------------------------
def any_value(value: AnyValue, depth: int = 0) -> object:
    """An OTLP ``AnyValue`` as a plain Python value (bytes as base64 text, unset as None)."""
    if depth > _MAX_VALUE_DEPTH:
        raise _TooDeep
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values, depth + 1)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes(pairs: Any, depth: int = 0) -> dict[str, object]:
    """Repeated ``KeyValue`` as a dict (a repeated key keeps its last value, as OTel SDKs do)."""
    out: dict[str, object] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = any_value(pair.value, depth)
    return out


def _hex_id(raw: bytes, size: int, name: str) -> str | ItemError | None:
    if not raw or not any(raw):  # empty or all zeros: "no id" per the OTLP spec
        return None
    if len(raw) != size:
        return ItemError(400, f"{name} must be {size} bytes, got {len(raw)}")
    return raw.hex()


def _message(record: LogRecord, attrs: dict[str, object]) -> str:
    kind = record.body.WhichOneof("value") if record.HasField("body") else None
    if kind is None:
        return record.event_name
    body = any_value(record.body)
    if isinstance(body, str):
        return body
    if isinstance(body, dict | list):
        attrs["body"] = body  # the structure stays searchable; the message is its JSON text
    return orjson.dumps(body).decode() if kind != "bytes_value" else str(body)


def _level(record: LogRecord, attrs: dict[str, object]) -> str | None:
    number = int(record.severity_number)
    if 1 <= number <= 24:
        return _SEVERITY_LEVELS[(number - 1) // 4].name
    text = record.severity_text
    level = parse_level(text) if text else None
    if level is not None:
        return level.name
    # Neither maps to a level: store INFO and keep what the source said, never refuse the record.
    if text:
        attrs["severity_text"] = text
    if number:
        attrs["severity_number"] = number
    return None


def record_item(
    record: LogRecord, base: dict[str, object], service: str | None, host: str | None, limits: IngestLimits
) -> dict[str, Any] | ItemError:
    """One LogRecord as a LogFlow item; ``base`` holds the resource and scope attributes."""
    if record.ByteSize() > limits.max_event_bytes:
        return ItemError(413, f"log record is larger than {limits.max_event_bytes} bytes")
    try:
        attrs = {**base, **attributes(record.attributes)}
    except _TooDeep:
        return ItemError(422, f"attribute values nest deeper than {_MAX_VALUE_DEPTH} levels")
    if record.event_name:
        attrs["event.name"] = record.event_name
    if record.dropped_attributes_count:
        attrs["otel.dropped_attributes_count"] = record.dropped_attributes_count
    try:
        message = _message(record, attrs)
    except _TooDeep:
        return ItemError(422, f"body nests deeper than {_MAX_VALUE_DEPTH} levels")
    item: dict[str, Any] = {"message": message}
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if nanos:  # neither set: normalize uses the receive time
        item["timestamp"] = format_timestamp(nanos // 1000)
    level = _level(record, attrs)
    if level is not None:
        item["level"] = level
    if service is not None:
        item["service"] = service
    if host is not None:
        item["host"] = host
    for name, raw, size in (("trace_id", record.trace_id, 16), ("span_id", record.span_id, 8)):
        value = _hex_id(raw, size, name)
        if isinstance(value, ItemError):
            return value
        if value is not None:
            item[name] = value
    item["metadata"] = attrs
    return item


@dataclass(frozen=True, slots=True)
class Located:
    """Where a record sits in the request, for error messages."""

    resource: int
    scope: int
    record: int

    def __str__(self) -> str:
        return f"resourceLogs[{self.resource}].scopeLogs[{self.scope}].logRecords[{self.record}]"


def to_items(
    request: ExportLogsServiceRequest, pre_errors: dict[int, ItemError], limits: IngestLimits
) -> tuple[list[DecodedItem], list[Located]]:
    """One DecodedItem per LogRecord (in request order) and each one's location."""
    total = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
    if total > limits.max_batch_events:
        raise BodyError(413, f"request has {total} log records; the limit is {limits.max_batch_events}")
    items: list[DecodedItem] = []
    where: list[Located] = []
    for r_index, resource_logs in enumerate(request.resource_logs):
        try:
            resource = attributes(resource_logs.resource.attributes)
        except _TooDeep:
            resource = {}
            resource_error: ItemError | None = ItemError(422, "resource attributes nest too deep")
        else:
            resource_error = None
        service = resource.pop("service.name", None)
        host = resource.pop("host.name", None)
        # A non-string service.name/host.name is kept as an attribute rather than coerced.
        if service is not None and not isinstance(service, str):
            resource["service.name"], service = service, None
        if host is not None and not isinstance(host, str):
            resource["host.name"], host = host, None
        for s_index, scope_logs in enumerate(resource_logs.scope_logs):
            scope = scope_logs.scope
            scope_error = resource_error
            try:
                base = {**resource, **attributes(scope.attributes)}
            except _TooDeep:
                base, scope_error = {}, ItemError(422, "scope attributes nest too deep")
            if scope.name:
                base["otel.scope.name"] = scope.name
            if scope.version:
                base["otel.scope.version"] = scope.version
            for l_index, record in enumerate(scope_logs.log_records):
                item = DecodedItem(index=len(items))
                error = pre_errors.get(item.index) or scope_error
                value = error or record_item(record, base, service, host, limits)
                if isinstance(value, ItemError):
                    item.error = value
                else:
                    item.value = value
                items.append(item)
                where.append(Located(r_index, s_index, l_index))
    return items, where


# -- answers ----------------------------------------------------------------------------------------
def _serialize(message: ExportLogsServiceResponse, media: str) -> bytes:
    if media == JSON:
        # OTLP/JSON uses the lowerCamelCase names protobuf's JSON mapping produces by default.
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def export_response(outcome: IngestOutcome | None, where: list[Located], media: str) -> bytes:
    """``ExportLogsServiceResponse``: empty on full success, ``partial_success`` when records were
    rejected (their count and the first few reasons with their locations)."""
    response = ExportLogsServiceResponse()
    if outcome is not None and outcome.rejected:
        rejected = [r for r in outcome.results if r.status != "accepted"]
        reasons = [f"{where[r.index]}: {r.error}" for r in rejected[:_MAX_REASONS]]
        if len(rejected) > _MAX_REASONS:
            reasons.append(f"and {len(rejected) - _MAX_REASONS} more")
        response.partial_success.rejected_log_records = len(rejected)
        response.partial_success.error_message = (
            f"{len(rejected)} of {len(outcome.results)} log records rejected: " + "; ".join(reasons)
        )
    return _serialize(response, media)


def status_body(http_status: int, message: str, media: str) -> bytes:
    """A ``google.rpc.Status`` error body in the request's encoding (OTLP/HTTP failure answers)."""
    code = _RPC_CODES.get(http_status, 2)  # 2 = UNKNOWN
    if media == JSON:
        return orjson.dumps({"code": code, "message": message})
    return rpc_status(code, message)
