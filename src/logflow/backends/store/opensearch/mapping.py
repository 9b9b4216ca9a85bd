"""Index layout: daily index names, the index template, and events as documents.

Every event lives in ``{prefix}-YYYY.MM.DD`` (the UTC day of its timestamp), so retention deletes
whole indices. One composable index template gives every daily index the same explicit mapping;
``dynamic: strict`` means a document that does not fit is refused instead of growing the mapping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logflow.domain.attributes import canonical_text
from logflow.domain.events import CORRELATION_FIELDS, LogEvent, encode_record, pack_document_record
from logflow.domain.levels import Level

DAY_US = 86_400 * 1_000_000
# The search API limits from + size to index.max_result_window; the HTTP API allows offsets up to
# 10,000 with pages of up to 1,000, so the last reachable page ends at 11,000.
MAX_RESULT_WINDOW = 11_000
MESSAGE_RAW_MAX = 2048  # longer messages are not counted by top_messages (keyword ignore_above)
# Lucene refuses terms over 32,766 bytes; 8,191 characters of UTF-8 always fit.
ATTR_KV_MAX = 8191
SCHEMA_VERSION = 1
# A document can be ~4x its event (attr_kv repeats every attribute, with '=' and '\\' escaped), and
# Kafka refuses messages over 1,000,000 bytes by default: a larger document goes on the queue as
# wire format 2 instead (see encode_indexed_record), which stays about the size of the event.
INDEXED_RECORD_MAX_BYTES = 512 * 1024

# Index names must be lower case and free of these (plus no leading -, _ or +). "%" is allowed by
# the engines but refused here: index names go into URL paths, where it would be read as an escape.
_BAD_PREFIX = re.compile(r'[A-Z\\/*?"<>| ,#:%]')
_DAY_SUFFIX = re.compile(r"\d{4}\.\d{2}\.\d{2}")

_KEYWORD: dict[str, Any] = {"type": "keyword"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_prefix(prefix: str) -> str:
    """The prefix if it can start an index name, else ValueError saying why."""
    if not prefix or _BAD_PREFIX.search(prefix) or prefix[0] in "-_+." or len(prefix) > 200:
        raise ValueError(
            f"store_index_prefix {prefix!r} cannot start an index name: use lower-case letters, digits, "
            "'-', '_' or '.', not starting with '-', '_', '+' or '.'"
        )
    return prefix


def index_name(prefix: str, day: int) -> str:
    """``{prefix}-YYYY.MM.DD`` for a day number since the epoch (UTC)."""
    return f"{prefix}-{datetime.fromtimestamp(day * 86_400, tz=UTC).strftime('%Y.%m.%d')}"


def day_of_index(prefix: str, name: str) -> int | None:
    """The day number of one of our daily indices, or None for any other index."""
    suffix = name.removeprefix(f"{prefix}-")
    if suffix == name or not _DAY_SUFFIX.fullmatch(suffix):
        return None
    try:
        parsed = datetime.strptime(suffix, "%Y.%m.%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(parsed.timestamp()) // 86_400


def pattern(prefix: str) -> str:
    return f"{prefix}-*"


def template_name(prefix: str) -> str:
    return f"{prefix}-template"


def index_template(prefix: str, *, shards: int, replicas: int) -> dict[str, Any]:
    """The composable index template (``PUT _index_template/{prefix}-template``)."""
    return {
        "index_patterns": [pattern(prefix)],
        # Composable templates whose patterns overlap may not share a priority. A longer prefix is
        # more specific ("logflow-eu-*" inside "logflow-*"), so it wins; above 100 because
        # Elasticsearch's built-in templates (logs-*-*, metrics-*-*) use 100.
        "priority": 200 + len(prefix),
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": shards,
                    "number_of_replicas": replicas,
                    "refresh_interval": "1s",
                    "max_result_window": MAX_RESULT_WINDOW,
                }
            },
            "mappings": {
                "dynamic": "strict",
                "_meta": {"managed_by": "logflow", "schema": SCHEMA_VERSION},
                "properties": {
                    "id": _KEYWORD,
                    "timestamp": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
                    # Microseconds, exact: sorting, time ranges and round trips use this field.
                    "ts_us": {"type": "long"},
                    "level": _KEYWORD,
                    "level_num": {"type": "byte"},
                    "service": _KEYWORD,
                    "host": _KEYWORD,
                    **{name: _KEYWORD for name in CORRELATION_FIELDS},
                    "message": {
                        "type": "text",
                        "analyzer": "standard",
                        "norms": False,  # every query is a filter; nothing is scored
                        "fields": {"raw": {"type": "keyword", "ignore_above": MESSAGE_RAW_MAX}},
                    },
                    # Kept in _source only: arbitrary attribute names cannot explode the mapping.
                    "attributes": {"type": "object", "enabled": False},
                    "attr_kv": {"type": "keyword", "ignore_above": ATTR_KV_MAX},
                    "flags": _KEYWORD,
                },
            },
        },
        "_meta": {"managed_by": "logflow", "schema": SCHEMA_VERSION},
    }


def attr_term(key: str, text: str) -> str:
    """``key=value`` as indexed in ``attr_kv``.

    ``\\`` and ``=`` in the key are escaped, so the first unescaped ``=`` ends the key and
    ``{"a=b": "c"}`` can never match the filter ``a:b=c``.
    """
    return key.replace("\\", "\\\\").replace("=", "\\=") + "=" + text


_MS_PER_MINUTE = 60_000
_minute_prefixes: dict[int, str] = {}
# "SS." for every second of a minute and "mmmZ" for every millisecond of a second: two lookups
# instead of formatting numbers (0.61 -> ~0.3 µs per stored event).
_SECONDS = tuple(f"{second:02d}." for second in range(60))
_MILLIS = tuple(f"{millis:03d}Z" for millis in range(1000))
# Level.name goes through Enum's descriptor machinery; a dict lookup does not.
_LEVEL_NAMES = {level: level.name for level in Level}


def _iso_millis(ts_us: int) -> str:
    # An ISO string, not a number: strict_date_optional_time would read a small epoch number such
    # as 1000 as the year 1000. Floored to the millisecond (integer arithmetic, no float rounding)
    # so that date_histogram buckets agree with ts_us. Each minute's part is kept: this runs for
    # every stored event.
    minute, ms = divmod(ts_us // 1000, _MS_PER_MINUTE)
    prefix = _minute_prefixes.get(minute)
    if prefix is None:
        if len(_minute_prefixes) > 100_000:
            _minute_prefixes.clear()
        moment = _EPOCH + timedelta(minutes=minute)  # any year 1-9999, unlike fromtimestamp
        prefix = _minute_prefixes[minute] = (
            f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
        )
    second, millis = divmod(ms, 1000)
    return prefix + _SECONDS[second] + _MILLIS[millis]


def _attr_terms(attributes: dict[str, Any]) -> list[str]:
    """``attr_term`` of every scalar attribute, the common cases (a string or integer value, a key
    without ``\\`` or ``=``) without a function call."""
    terms = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:
            text = value
        elif kind is int:  # str() is JSON's spelling of an int (a bool's type is bool, not int)
            text = str(value)
        elif kind is float and "e" not in (text := repr(value)) and "n" not in text:
            pass  # repr() is JSON's (orjson's) spelling too, unless it has an exponent, inf or nan
        else:
            converted = canonical_text(value)
            if converted is None:
                continue
            text = converted
        terms.append(attr_term(key, text) if "=" in key or "\\" in key else key + "=" + text)
    return terms


def document(ts_us: int, level: Level, service: str, body: dict[str, Any]) -> dict[str, Any]:
    """The indexed form of an event given as its queue body (``LogEvent.body()``: ``i``, ``m``,
    ``h``, the correlation ids, ``a``, ``f``); absent optional fields are left out."""
    get = body.get
    return document_of(body["i"], ts_us, level, service, body["m"], get("h"), get("trace_id"), get("span_id"),
                       get("request_id"), get("correlation_id"), get("a"), get("f"))


def document_of(event_id: str, ts_us: int, level: Level, service: str, message: str, host: str | None,
                trace_id: str | None, span_id: str | None, request_id: str | None, correlation_id: str | None,
                attributes: dict[str, Any] | None, flags: Sequence[str] | None) -> dict[str, Any]:
    """The indexed form of an event given field by field, in LogEvent's order.

    Runs for every ingested event (the API encodes events in this form for the queue, see
    ``encode_indexed_record``), so the fields are written out one by one.
    """
    doc: dict[str, Any] = {
        "id": event_id,
        "timestamp": _iso_millis(ts_us),
        "ts_us": ts_us,
        "level": _LEVEL_NAMES[level],
        "level_num": int(level),
        "service": service,
        "message": message,
    }
    if host is not None:
        doc["host"] = host
    if trace_id is not None:
        doc["trace_id"] = trace_id
    if span_id is not None:
        doc["span_id"] = span_id
    if request_id is not None:
        doc["request_id"] = request_id
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    if attributes:
        doc["attributes"] = attributes
        if kv := _attr_terms(attributes):
            doc["attr_kv"] = kv
    if flags:
        doc["flags"] = flags
    return doc


def encode_indexed_record(event_id: str, timestamp: int, level: Level, service: str, message: str,
                          host: str | None, trace_id: str | None, span_id: str | None, request_id: str | None,
                          correlation_id: str | None, attributes: dict[str, Any],
                          flags: Sequence[str]) -> tuple[str, bytes, bytes]:
    """(event id, queue key, wire format 3): the event as its OpenSearch document.

    The API builds the document once, while it holds the event's fields anyway; a processor then
    copies it into ``_bulk`` requests without decoding or encoding JSON (see prepare.py). A
    ``RecordEncoder``, like ``events.encode_record``, to which it leaves documents over
    ``INDEXED_RECORD_MAX_BYTES``. ``event_id`` must match ``EVENT_ID_PATTERN``, as every id that
    normalization lets through does.
    """
    key = service.encode()
    doc = document_of(event_id, timestamp, level, service, message, host, trace_id, span_id, request_id,
                      correlation_id, attributes, flags)
    document_json = orjson.dumps(doc)
    if len(document_json) > INDEXED_RECORD_MAX_BYTES:
        # Format 2, about the size of the event as sent: the processor builds its document itself.
        return encode_record(event_id, timestamp, level, service, message, host, trace_id, span_id, request_id,
                             correlation_id, attributes, flags)
    return event_id, key, pack_document_record(event_id, timestamp, level, key, document_json)


def to_document(event: LogEvent) -> dict[str, Any]:
    """The indexed form of an event."""
    return document(event.timestamp, event.level, event.service, event.body())


def from_source(source: dict[str, Any]) -> LogEvent:
    """The event back from a hit's ``_source``."""
    return LogEvent(
        id=source["id"], timestamp=int(source["ts_us"]), level=Level(source["level_num"]),
        service=source["service"], message=source["message"], host=source.get("host"),
        trace_id=source.get("trace_id"), span_id=source.get("span_id"), request_id=source.get("request_id"),
        correlation_id=source.get("correlation_id"), attributes=source.get("attributes") or {},
        flags=source.get("flags") or [],
    )
