"""Turn one decoded JSON item into a LogEvent, or into a precise reason it was refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from logflow.domain.events import CORRELATION_FIELDS, LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import ACCEPTED_LEVEL_NAMES, Level, parse_level
from logflow.ingest.limits import IngestLimits
from logflow.ingest.timestamps import TimestampError, parse_timestamp

_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_NAME_MAX = 256
# Keys that feed the fixed model; everything else becomes an attribute. The alternatives are the
# names common shippers use (ECS ``@timestamp``, ``msg`` from pino/zap, ``severity`` from GCP).
_TIMESTAMP_KEYS = ("timestamp", "@timestamp", "time", "ts")
_MESSAGE_KEYS = ("message", "msg")
_LEVEL_KEYS = ("level", "severity", "log.level")
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


def _short_string(item: dict[str, Any], key: str) -> str | ItemError | None:
    value = item.get(key)
    if value is None:
        return None
    if type(value) is str and len(value) <= _NAME_MAX:  # the common case, checked cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ItemError(422, f"'{key}' must be a string")
    text = str(value)
    if len(text) > _NAME_MAX:
        return ItemError(422, f"'{key}' is longer than {_NAME_MAX} characters")
    return text


def _shape_error(value: Any, limits: IngestLimits) -> ItemError | None:
    """Count leaf fields and nesting depth of the attributes without recursion limits surprises."""
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


def normalize(
    item: object, *, now_us: int, limits: IngestLimits, flags: list[str] | None = None
) -> LogEvent | ItemError:
    """Validate and normalize one item; never raises for bad input."""
    if not isinstance(item, dict):
        return ItemError(422, f"an event must be a JSON object, not {type(item).__name__}")

    message = _first(item, _MESSAGE_KEYS)
    if type(message) is not str:
        if message is None:
            return ItemError(422, "missing 'message'")
        if isinstance(message, dict | list | bool):
            return ItemError(422, "'message' must be a string")
        message = str(message)

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

    raw_level = _first(item, _LEVEL_KEYS)
    if raw_level is None:
        level = Level.INFO
    else:
        parsed_level = parse_level(raw_level)
        if parsed_level is None:
            return ItemError(422, f"unknown level {str(raw_level)[:32]!r}; accepted: {ACCEPTED_LEVEL_NAMES}")
        level = parsed_level

    strings: dict[str, str | None] = {}
    for key in ("service", "host", *CORRELATION_FIELDS):
        value = _short_string(item, key)
        if isinstance(value, ItemError):
            return value
        strings[key] = value

    raw_id = item.get("id")
    if raw_id is None:
        event_id = new_ulid(ts // 1000)
    elif isinstance(raw_id, str) and _ID_PATTERN.fullmatch(raw_id):
        event_id = raw_id
    else:
        return ItemError(422, "'id' must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")

    attributes = {k: v for k, v in item.items() if k not in _MODEL_KEYS}
    metadata = item.get("metadata")
    if isinstance(metadata, dict):
        attributes.update(metadata)
    elif metadata is not None:
        attributes["metadata"] = metadata
    if attributes:
        error = _shape_error(attributes, limits)
        if error is not None:
            return error

    return LogEvent(
        id=event_id,
        timestamp=ts,
        level=level,
        service=strings["service"] or "unknown",
        message=message,
        host=strings["host"],
        trace_id=strings["trace_id"],
        span_id=strings["span_id"],
        request_id=strings["request_id"],
        correlation_id=strings["correlation_id"],
        attributes=attributes,
        flags=flags or [],
    )
