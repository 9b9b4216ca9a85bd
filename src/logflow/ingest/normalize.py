"""Turn one decoded JSON item into a LogEvent, or into a precise reason it was refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from logflow.domain.events import CORRELATION_FIELDS, EVENT_ID_PATTERN, LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import ACCEPTED_LEVEL_NAMES, Level, parse_level
from logflow.ingest.limits import IngestLimits
from logflow.ingest.timestamps import TimestampError, parse_timestamp

T = TypeVar("T")
# What normalization hands on: id, timestamp (µs), level, service, message, host, trace_id,
# span_id, request_id, correlation_id, attributes, flags: LogEvent's fields in its order.
EventBuilder = Callable[[str, int, Level, str, str, str | None, str | None, str | None, str | None, str | None,
                         dict[str, Any], Sequence[str]], T]

_ID_PATTERN = re.compile(EVENT_ID_PATTERN)
_NAME_MAX = 256
# Keys that feed the fixed model; everything else becomes an attribute. The alternatives are the
# names common shippers use (ECS ``@timestamp``, ``msg`` from pino/zap, ``severity`` from GCP).
_TIMESTAMP_KEYS = ("timestamp", "@timestamp", "time", "ts")
_MESSAGE_KEYS = ("message", "msg")
_LEVEL_KEYS = ("level", "severity", "log.level")
# The name fields, in LogEvent's order after ``message``.
_NAME_KEYS = ("service", "host", *CORRELATION_FIELDS)
_MODEL_KEYS = frozenset(
    {"id", "service", "host", "metadata", *_TIMESTAMP_KEYS, *_MESSAGE_KEYS, *_LEVEL_KEYS, *CORRELATION_FIELDS}
)


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item was refused: an HTTP-like status code and a human-readable reason."""

    code: int
    reason: str


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = item.get(key)
        if value is not None:
            return value
    return None


def _short_string(key: str, value: Any) -> str | ItemError:
    """``value`` of ``key`` as a name string, for the cases the caller's inline check did not take."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ItemError(422, f"'{key}' must be a string")
    text = str(value)
    if len(text) > _NAME_MAX:
        return ItemError(422, f"'{key}' is longer than {_NAME_MAX} characters")
    return text


def _checked_names(names: tuple[Any, ...]) -> tuple[str | None, ...] | ItemError:
    """The name fields (in _NAME_KEYS's order) as strings, or why one of them cannot be one."""
    checked: list[str | None] = []
    for key, value in zip(_NAME_KEYS, names, strict=True):
        if value is not None and (type(value) is not str or len(value) > _NAME_MAX):
            value = _short_string(key, value)
            if isinstance(value, ItemError):
                return value
        checked.append(value)
    return tuple(checked)


def _shape_error(value: dict[str, Any], limits: IngestLimits) -> ItemError | None:
    """Count leaf fields and nesting depth of the attributes without recursion limits surprises."""
    if len(value) <= limits.max_fields and limits.max_depth >= 1:
        # The common case, flat attributes, costs one pass over the values.
        for child in value.values():
            if isinstance(child, (dict, list)):  # a tuple: faster than a union on 3.11
                break
        else:
            return None
    fields = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            return ItemError(422, f"attributes nest deeper than {limits.max_depth} levels")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            fields += 1
            continue
        if not children:
            fields += 1
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            else:
                fields += 1
        if fields > limits.max_fields:
            return ItemError(422, f"event has more than {limits.max_fields} attribute fields")
    return None


def _log_event(event_id: str, timestamp: int, level: Level, service: str, message: str, host: str | None,
               trace_id: str | None, span_id: str | None, request_id: str | None, correlation_id: str | None,
               attributes: dict[str, Any], flags: Sequence[str]) -> LogEvent:
    # Copies: an event from normalize() shares no mutable object with the caller's item (the
    # pipeline's wire encoder needs no copy of a metadata object and gets none).
    return LogEvent(event_id, timestamp, level, service, message, host, trace_id, span_id, request_id,
                    correlation_id, dict(attributes), list(flags))


def normalize(
    item: object, *, now_us: int, limits: IngestLimits, flags: Sequence[str] | None = ()
) -> LogEvent | ItemError:
    """Validate and normalize one item into a LogEvent; never raises for bad input."""
    return normalize_into(_log_event, item, now_us=now_us, limits=limits, flags=flags or ())


def normalize_into(
    build: EventBuilder[T], item: object, *, now_us: int, limits: IngestLimits, flags: Sequence[str] = ()
) -> T | ItemError:
    """Validate and normalize one item, then hand its fields, in LogEvent's order, to ``build``.

    ``build`` makes a LogEvent (``normalize``), or is the ingest pipeline's queue encoder
    (``encode_record``, or the store's own, such as ``encode_indexed_record``), which needs only
    the queue's wire form. Runs once per ingested event, so the common shapes
    (string message, ISO or epoch timestamp, a level as sent by most shippers, short string
    names) take the shortest path.
    """
    if not isinstance(item, dict):
        return ItemError(422, f"an event must be a JSON object, not {type(item).__name__}")
    get = item.get

    message = get("message")
    if message is None:
        message = get("msg")
    if type(message) is not str:
        if message is None:
            return ItemError(422, "missing 'message'")
        if isinstance(message, dict | list | bool):
            return ItemError(422, "'message' must be a string")
        message = str(message)

    raw_ts = get("timestamp")
    if raw_ts is None:
        raw_ts = _first(item, _TIMESTAMP_KEYS)
    if raw_ts is None:
        ts = now_us
    else:
        try:
            ts = parse_timestamp(raw_ts)
        except TimestampError as exc:
            return ItemError(422, f"invalid 'timestamp': {exc}")
        except (OverflowError, ValueError):
            return ItemError(422, "invalid 'timestamp': out of range")
        if ts > now_us + limits.max_future_skew_s * 1_000_000:
            return ItemError(422, f"'timestamp' is more than {limits.max_future_skew_s}s in the future")
        if ts < now_us - limits.retention_s * 1_000_000:
            days = limits.retention_s // 86400
            return ItemError(422, f"'timestamp' is older than the retention window ({days} days)")

    raw_level = get("level")
    if raw_level is None:
        raw_level = _first(item, _LEVEL_KEYS)
    if raw_level is None:
        level = Level.INFO
    else:
        found = parse_level(raw_level)
        if found is None:
            return ItemError(422, f"unknown level {str(raw_level)[:32]!r}; accepted: {ACCEPTED_LEVEL_NAMES}")
        level = found

    # Unrolled in _NAME_KEYS's order, then checked in one pass: this runs once per event.
    names = (get("service"), get("host"), get("trace_id"), get("span_id"), get("request_id"), get("correlation_id"))
    for value in names:
        if value is not None and (type(value) is not str or len(value) > _NAME_MAX):
            checked = _checked_names(names)
            if type(checked) is ItemError:
                return checked
            names = checked  # type: ignore[assignment]  # not an ItemError, see above
            break

    raw_id = get("id")
    if raw_id is None:
        event_id = new_ulid(ts // 1000)
    elif isinstance(raw_id, str) and _ID_PATTERN.fullmatch(raw_id):
        event_id = raw_id
    else:
        return ItemError(422, "'id' must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")

    metadata = get("metadata")
    # issuperset walks the keys without building a set: most events have no loose attributes,
    # and then a metadata object is the attributes as it is, not a copy.
    if _MODEL_KEYS.issuperset(item) and (metadata is None or type(metadata) is dict):
        attributes = {} if metadata is None else metadata
    else:
        attributes = {k: v for k, v in item.items() if k not in _MODEL_KEYS}
        if isinstance(metadata, dict):
            attributes.update(metadata)
        elif metadata is not None:
            attributes["metadata"] = metadata
    if attributes:
        error = _shape_error(attributes, limits)
        if error is not None:
            return error

    service, host, trace_id, span_id, request_id, correlation_id = names
    return build(event_id, ts, level, service or "unknown", message, host, trace_id, span_id, request_id,
                 correlation_id, attributes, flags)
