"""The normalized log event every protocol produces and every store keeps."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logflow.domain.levels import Level

# Level(n) goes through Enum's call machinery; the processor decodes every queued event.
_LEVEL_BY_NUMBER = {int(level): level for level in Level}  # unknown numbers: KeyError, a dead letter

CORRELATION_FIELDS: tuple[str, ...] = ("trace_id", "span_id", "request_id", "correlation_id")

# Queue wire format 2: a marker byte, then timestamp, level and service in a fixed header, then the
# body as JSON. Format 1 (still read) is one JSON object; its first byte is always "{".
_WIRE_2 = 2
_WIRE_2_HEADER = struct.Struct("<BqBH")  # marker, timestamp µs, level, service length in bytes
# Format 3: the event already as a store indexes it, for a store that asks for that (see
# DocumentEncodingStore): the header of format 2 plus the id's length, then service, id and the
# store's document JSON. The store's writer copies the document through untouched, so the
# processor does no JSON work at all; the document names the event's fields as LogEvent does
# (``id``, ``message``, ``host``, the correlation ids, ``attributes``, ``flags``), so any other
# reader takes the event back from it.
WIRE_3 = 3
_WIRE_3_HEADER = struct.Struct("<BqBHB")  # marker, timestamp µs, level, service length, id length
# What an event id may hold, wherever one is accepted (normalize, the _bulk adapter; generated ids
# are ULIDs): nothing a JSON string would need to escape, so a writer may put an id's bytes
# between quotes as they are.
EVENT_ID_PATTERN = r"[A-Za-z0-9._:\-]{1,128}"
_SAFE_ID = re.compile(EVENT_ID_PATTERN.encode())
_DOCUMENT_FIELDS = (("host", "h"), *((name, name) for name in CORRELATION_FIELDS), ("attributes", "a"),
                    ("flags", "f"))

# An event given field by field, in LogEvent's order, to (event id, queue key, wire form).
RecordEncoder = Callable[[str, int, Level, str, str, str | None, str | None, str | None, str | None, str | None,
                          dict[str, Any], Sequence[str]], tuple[str, bytes, bytes]]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(ts_us: int) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and microsecond precision."""
    # Integer arithmetic: a float of microseconds since 1970 can be off by one microsecond.
    moment = _EPOCH + timedelta(microseconds=ts_us)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:" \
           f"{moment.second:02d}.{moment.microsecond:06d}Z"


WIRE_ERRORS = (orjson.JSONDecodeError, KeyError, ValueError, TypeError, struct.error)


def read_wire(payload: bytes) -> tuple[int, Level, str, dict[str, Any], bytes | None]:
    """(timestamp, level, service, body document, body JSON as sent or None) of a queue payload.

    Reads every format ever written (the queue may hold events of an older version during an
    upgrade); the body JSON is None for format 1. Raises one of WIRE_ERRORS for a damaged payload.
    """
    if payload[:1] == b"{":
        doc = orjson.loads(payload)
        level = doc["l"]
        if type(level) is not int:  # true and 2.0 hash as 1 and 2: they would be read as levels
            raise TypeError(f"level is {type(level).__name__}, not an integer")
        return doc["t"], _LEVEL_BY_NUMBER[level], doc["s"], doc, None
    if payload[:1] == b"\x03":
        return _read_wire_3(payload)
    marker, timestamp, level, size = _WIRE_2_HEADER.unpack_from(payload)
    if marker != _WIRE_2:
        raise ValueError(f"unknown queue wire format {marker}")
    start = _WIRE_2_HEADER.size
    body_json = payload[start + size :]
    doc = orjson.loads(body_json)
    if not isinstance(doc, dict):
        raise TypeError(f"queue payload body is {type(doc).__name__}, not an object")
    return timestamp, _LEVEL_BY_NUMBER[level], payload[start : start + size].decode(), doc, body_json


# The timestamps a store can file: years 1000 to 9999 (daily index and partition names carry a
# four-digit year, which strftime does not pad below 1000; datetime stops at 9999). The API
# refuses far more than this (its retention and future-skew limits).
MIN_TIMESTAMP_US = -30_610_224_000_000_000
MAX_TIMESTAMP_US = 253_402_300_799_999_999
# The longest event id a payload may carry: what the API allows (EVENT_ID_PATTERN). OpenSearch
# refuses a whole _bulk request, not the one item, for an _id over 512 bytes.
MAX_EVENT_ID_CHARS = 128
# How deep attributes may nest in a stored event. Stores answer events through orjson, which
# writes at most 254 levels (an answer wraps an event in up to four); ingest allows 8
# (IngestLimits.max_depth), a payload from elsewhere anything up to orjson's 1024 when reading.
MAX_STORED_NESTING = 200


def _nests_deeper(raw: bytes, body: dict[str, Any], limit: int = MAX_STORED_NESTING) -> bool:
    """Whether ``body`` (parsed from ``raw``) nests deeper than ``limit``. Brackets are counted in
    ``raw`` first, at C speed: nearly every event is too short to nest that deep at all."""
    if len(raw) <= 2 * limit or raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_wire_fields(timestamp: object, service: object, body: dict[str, Any], raw: bytes | None = None) -> None:
    """TypeError unless what ``read_wire`` gave has the types the stores rely on: an integer
    timestamp in years 1000-9999; strings for service, id (up to 128 characters), message and host;
    an object of attributes; a list of flags.

    LogFlow's own encoders cannot write anything else, but the queue may hold payloads from
    elsewhere (another writer on the topic); without this check such a payload (a number as the
    service, a list as the attributes) crashed the processor on every retry of its batch. Runs
    once per stored event, so it is written out (the correlation ids, which no store computes
    with, are not looked at).
    """
    get = body.get
    host, attributes, flags = get("h"), get("a"), get("f")
    event_id = get("i")
    if (type(timestamp) is not int or not MIN_TIMESTAMP_US <= timestamp <= MAX_TIMESTAMP_US
            or type(service) is not str or type(event_id) is not str or len(event_id) > MAX_EVENT_ID_CHARS
            or type(get("m")) is not str or (host is not None and type(host) is not str)
            or (attributes is not None and type(attributes) is not dict)
            or (flags is not None and type(flags) is not list)):
        raise TypeError(_wrong_field(timestamp, service, body))
    if raw is not None and _nests_deeper(raw, body):
        raise TypeError(f"attributes nest deeper than {MAX_STORED_NESTING} levels")


def _wrong_field(timestamp: object, service: object, body: dict[str, Any]) -> str:
    """Which field ``check_wire_fields`` refused, for the dead letter's reason."""
    if type(timestamp) is not int:
        return f"timestamp is {type(timestamp).__name__}, not an integer"
    if not MIN_TIMESTAMP_US <= timestamp <= MAX_TIMESTAMP_US:
        return f"timestamp {timestamp} is outside the years 1000-9999"
    if type(service) is not str:
        return f"service is {type(service).__name__}, not a string"
    event_id = body.get("i")
    if type(event_id) is str and len(event_id) > MAX_EVENT_ID_CHARS:
        return f"id is longer than {MAX_EVENT_ID_CHARS} characters"
    for key, name, wanted in (("i", "id", str), ("m", "message", str), ("h", "host", str),
                              ("a", "attributes", dict), ("f", "flags", list)):
        value = body.get(key)
        if value is None and key in ("i", "m"):
            return f"missing {key!r} ({name})"
        if value is not None and type(value) is not wanted:
            return f"{key!r} ({name}) is {type(value).__name__}, not {wanted.__name__}"
    return "fields of the wrong type"


def pack_document_record(event_id: str, timestamp: int, level: Level, key: bytes, document_json: bytes) -> bytes:
    """Wire format 3 of an event whose store document is ``document_json`` (``key``: the service)."""
    event_id_bytes = event_id.encode()
    header = _WIRE_3_HEADER.pack(WIRE_3, timestamp, level, len(key), len(event_id_bytes))
    return b"".join((header, key, event_id_bytes, document_json))  # one copy of the document, not three


def read_document_record(payload: bytes) -> tuple[int, bytes, bytes]:
    """(timestamp, id, document JSON) of a format-3 payload, checked just enough to be copied
    into an NDJSON request as is: an id that needs no escaping, an object on one line.

    Raises one of WIRE_ERRORS otherwise: a payload from elsewhere on the topic must not be able to
    add lines (actions) to a bulk request.
    """
    marker, timestamp, _, size, id_size = _WIRE_3_HEADER.unpack_from(payload)
    if marker != WIRE_3:
        raise ValueError(f"not queue wire format 3 (marker {marker})")
    start = _WIRE_3_HEADER.size + size
    event_id = payload[start : start + id_size]
    document_json = payload[start + id_size :]
    if not _SAFE_ID.fullmatch(event_id):
        raise ValueError(f"queue payload has an invalid event id {event_id[:40]!r}")
    if not MIN_TIMESTAMP_US <= timestamp <= MAX_TIMESTAMP_US:
        raise ValueError(f"timestamp {timestamp} is outside the years 1000-9999")
    # Our encoder's documents start with the id; the check also keeps header and document agreeing.
    if not document_json.startswith(b'{"id":"' + event_id + b'",') or b"\n" in document_json:
        raise ValueError("queue payload document is not a JSON object on one line starting with its id")
    return timestamp, event_id, document_json


def _read_wire_3(payload: bytes) -> tuple[int, Level, str, dict[str, Any], bytes | None]:
    _, timestamp, level, size, _ = _WIRE_3_HEADER.unpack_from(payload)
    service = payload[_WIRE_3_HEADER.size : _WIRE_3_HEADER.size + size].decode()
    document = orjson.loads(read_document_record(payload)[2])  # an object: it starts with '{"id":'
    # Back to the body's compact keys, in event_body's order.
    body: dict[str, Any] = {"i": document["id"], "m": document["message"]}
    for name, short in _DOCUMENT_FIELDS:
        value = document.get(name)
        if value is not None:
            body[short] = value
    return timestamp, _LEVEL_BY_NUMBER[level], service, body, None


def event_body(event_id: str, message: str, host: str | None, trace_id: str | None, span_id: str | None,
               request_id: str | None, correlation_id: str | None, attributes: dict[str, Any],
               flags: Sequence[str]) -> dict[str, Any]:
    """The stored document of an event: everything but timestamp, level and service, with compact keys."""
    # Written out field by field (no loop over CORRELATION_FIELDS): this runs for every ingested
    # event. Key order is the stored documents' order; keep it.
    doc: dict[str, Any] = {"i": event_id, "m": message}
    if host is not None:
        doc["h"] = host
    if trace_id is not None:
        doc["trace_id"] = trace_id
    if span_id is not None:
        doc["span_id"] = span_id
    if request_id is not None:
        doc["request_id"] = request_id
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    if attributes:
        doc["a"] = attributes
    if flags:
        doc["f"] = flags
    return doc


def encode_record(event_id: str, timestamp: int, level: Level, service: str, message: str, host: str | None,
                  trace_id: str | None, span_id: str | None, request_id: str | None, correlation_id: str | None,
                  attributes: dict[str, Any], flags: Sequence[str]) -> tuple[str, bytes, bytes]:
    """(event id, queue key, wire form) of an event given field by field, in LogEvent's order.

    The ingest pipeline calls this straight from normalization, without making a LogEvent: one
    object less per event on the API's hottest path. The key is the service, so one service's
    events stay in order.
    """
    key = service.encode()
    body = event_body(event_id, message, host, trace_id, span_id, request_id, correlation_id, attributes, flags)
    return event_id, key, _WIRE_2_HEADER.pack(_WIRE_2, timestamp, level, len(key)) + key + orjson.dumps(body)


@dataclass(slots=True)
class LogEvent:
    """One normalized log event.

    ``timestamp`` is microseconds since the Unix epoch (UTC). ``attributes`` holds every field
    that is not part of the fixed model, including the seed's ``metadata`` object. ``flags``
    records what normalization had to repair (for example ``invalid_utf8``).
    """

    id: str
    timestamp: int
    level: Level
    service: str
    message: str
    host: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    # Set by from_wire: the body exactly as it travelled, so a store that keeps bodies as JSON
    # (the embedded one) need not encode it again. Never part of equality.
    body_json: bytes | None = field(default=None, compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        """Everything but timestamp, level and service, with compact keys: what stores keep as the document."""
        return event_body(self.id, self.message, self.host, self.trace_id, self.span_id, self.request_id,
                          self.correlation_id, self.attributes, self.flags)

    # Wire form used on the queue, stable across releases (the queue may hold events written by
    # an older version during an upgrade, so from_wire reads every format ever written).
    def to_wire(self) -> bytes:
        return self.to_record()[1]

    def to_record(self) -> tuple[bytes, bytes]:
        """(queue key, wire form): the key is the service, so one service's events stay in order."""
        return encode_record(self.id, self.timestamp, self.level, self.service, self.message, self.host,
                             self.trace_id, self.span_id, self.request_id, self.correlation_id, self.attributes,
                             self.flags)[1:]

    def to_json(self) -> bytes:
        """The event as one compact JSON object (wire format 1): dead letters keep this readable form."""
        doc = self.body()
        doc.update(t=self.timestamp, l=int(self.level), s=self.service)
        return orjson.dumps(doc)

    @classmethod
    def from_wire(cls, payload: bytes, *, checked: bool = False) -> LogEvent:
        """The event of a queue payload; ``checked`` also refuses (TypeError) fields of the wrong
        type, as a payload from elsewhere may have (see check_wire_fields)."""
        timestamp, level, service, doc, body_json = read_wire(payload)
        if checked:
            check_wire_fields(timestamp, service, doc, payload)
        get = doc.get
        # Positional, in field order: the processor decodes every queued event (~0.5 µs less each).
        return cls(
            doc["i"], timestamp, level, service, doc["m"], get("h"), get("trace_id"),
            get("span_id"), get("request_id"), get("correlation_id"), get("a") or {}, get("f") or [], body_json,
        )

    @classmethod
    def from_wire_batch(cls, payloads: Sequence[bytes]) -> tuple[list[LogEvent], list[tuple[int, str]]]:
        """Decode queue payloads: the events, and (index, reason) of each payload that is not one."""
        events: list[LogEvent] = []
        undecodable: list[tuple[int, str]] = []
        for index, payload in enumerate(payloads):
            try:
                events.append(cls.from_wire(payload, checked=True))
            except WIRE_ERRORS as exc:
                undecodable.append((index, f"undecodable queue payload: {exc}"))
        return events, undecodable

    def to_api(self) -> dict[str, Any]:
        """The public JSON shape (the seed's log fields plus correlation ids and ``metadata``)."""
        out: dict[str, Any] = {
            "id": self.id,
            "timestamp": format_timestamp(self.timestamp),
            "level": self.level.name,
            "service": self.service,
            "host": self.host,
            "message": self.message,
        }
        for name in CORRELATION_FIELDS:
            out[name] = getattr(self, name)
        out["metadata"] = self.attributes
        if self.flags:
            out["flags"] = self.flags
        return out
