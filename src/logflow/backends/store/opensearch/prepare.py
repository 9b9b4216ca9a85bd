"""The CPU-bound half of an OpenSearch write, as a pure function another process can run.

Turning queue payloads into ``_bulk`` lines (decode, build the document, encode it) needs nothing
from the cluster, so the processor runs ``prepare_payloads`` for the next batch in a helper
process while the current batch is being indexed (see ingest/processor.py). Straight from the
queue's wire form, without LogEvent objects; the result is byte for byte what ``to_document``
gives for the same event (tests/unit/test_opensearch_prepare.py).

The index prefix is the store's setting and the helper knows no settings: each event comes back
as (UTC day, the rest of its action line and its document line), and the writer puts the
``{"create":{"_index":"<prefix>-<day>",`` head in front.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logflow.backends.store.base import PreparedBatch
from logflow.domain.attributes import canonical_text
from logflow.domain.events import WIRE_ERRORS, read_wire
from logflow.domain.levels import Level

from .mapping import DAY_US, attr_term

# (UTC day number, b'"_id":"…"}}\n{document}\n'). A plain tuple: it crosses from the helper by marshal.
Tail = tuple[int, bytes]

_MS_PER_MINUTE = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_minute_prefixes: dict[int, str] = {}


def _iso_millis(ts_us: int) -> str:
    """Same string as mapping._iso_millis (floored to the millisecond), the minute's part cached."""
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
    return f"{prefix}{second:02d}.{millis:03d}Z"


def _attr_terms(attributes: dict[str, Any]) -> list[str]:
    """mapping.attr_term of every scalar attribute, with the common case (a string value, a key
    without ``\\`` or ``=``) taking no function call."""
    terms = []
    for key, value in attributes.items():
        if type(value) is str:
            text = value
        else:
            converted = canonical_text(value)
            if converted is None:
                continue
            text = converted
        if "=" in key or "\\" in key:
            terms.append(attr_term(key, text))
        else:
            terms.append(key + "=" + text)
    return terms


def _document(ts: int, level: Level, service: str, body: dict[str, Any]) -> dict[str, Any]:
    # Key order and presence rules as in mapping.to_document; written out for the same reason
    # as LogEvent.body: it runs for every stored event.
    doc: dict[str, Any] = {
        "id": body["i"],
        "timestamp": _iso_millis(ts),
        "ts_us": ts,
        "level": level.name,
        "level_num": int(level),
        "service": service,
        "message": body["m"],
    }
    get = body.get
    if (host := get("h")) is not None:
        doc["host"] = host
    if (value := get("trace_id")) is not None:
        doc["trace_id"] = value
    if (value := get("span_id")) is not None:
        doc["span_id"] = value
    if (value := get("request_id")) is not None:
        doc["request_id"] = value
    if (value := get("correlation_id")) is not None:
        doc["correlation_id"] = value
    if attributes := get("a"):
        doc["attributes"] = attributes
        if kv := _attr_terms(attributes):
            doc["attr_kv"] = kv
    if flags := get("f"):
        doc["flags"] = flags
    return doc


def prepare_payloads(payloads: list[bytes]) -> PreparedBatch:
    """Queue payloads → (undecodable, [(day, action tail + document line)]) in payload order."""
    tails: list[Tail] = []
    undecodable: list[tuple[int, str]] = []
    dumps = orjson.dumps
    for index, payload in enumerate(payloads):
        try:
            ts, level, service, body, _ = read_wire(payload)
            doc = _document(ts, level, service, body)
            tails.append((ts // DAY_US, b'"_id":' + dumps(doc["id"]) + b"}}\n" + dumps(doc) + b"\n"))
        except WIRE_ERRORS as exc:
            undecodable.append((index, f"undecodable queue payload: {exc}"))
    return PreparedBatch(undecodable=undecodable, data=tails)
