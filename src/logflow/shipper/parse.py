"""Turn a joined event into LogFlow's item form: JSON objects keep their fields, text becomes ``message``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from logflow.domain.levels import parse_level
from logflow.shipper.tailer import ShipEvent

# A level word standing alone near the start of the line ("... INFO dfs.DataNode: ...", "[ERROR]"),
# upper case only so that prose ("an error occurred") is not taken for a level.
_LEVEL_WORD = re.compile(
    r"(?<![\w.$-])(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|SEVERE|CRITICAL|CRIT|FATAL|PANIC|EMERG|ALERT)(?![\w.$-])"
)
_LEVEL_KV = re.compile(r"\b(?:level|lvl|severity|loglevel)\s*[=:]\s*\"?([A-Za-z]+)", re.IGNORECASE)
_LEVEL_HEAD = 160  # only the head of a line: a stack trace further down may say ERROR anywhere
_TIMESTAMP_KEYS = ("timestamp", "@timestamp", "time", "ts")
_MESSAGE_KEYS = ("message", "msg")


def detect_level(text: str) -> str | None:
    """A level name found in ``level=warn`` / ``severity: error`` form or as a bare upper-case word, or None."""
    head = text[:_LEVEL_HEAD]
    match = _LEVEL_KV.search(head)
    if match and parse_level(match.group(1)) is not None:
        return match.group(1).upper()
    match = _LEVEL_WORD.search(head)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """How text becomes items: defaults for service/host, whether to parse JSON and detect levels."""

    service: str
    host: str | None = None
    json_lines: bool = True
    detect_levels: bool = True


def event_id(key: str, offset: int) -> str:
    """Deterministic id of the event starting at ``offset`` of file generation ``key``."""
    return f"{key}-{offset}"


def to_item(event: ShipEvent, ts_us: int, options: ParseOptions) -> dict[str, Any]:
    """The item for ``POST /api/v1/ingest``; ``ts_us`` is used when the line carries no timestamp."""
    text = event.raw.text
    item: dict[str, Any] | None = None
    if options.json_lines and text.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            item = parsed
            if not any(item.get(k) is not None for k in _MESSAGE_KEYS):
                item["message"] = text  # an object without a message stays searchable by its raw text
    if item is None:
        item = {"message": text}
        if options.detect_levels:
            level = detect_level(text)
            if level is not None:
                item["level"] = level
    item.setdefault("id", event_id(event.key, event.raw.start))
    if not any(item.get(k) is not None for k in _TIMESTAMP_KEYS):
        item["timestamp"] = ts_us
    if item.get("service") is None:
        item["service"] = options.service
    if options.host and item.get("host") is None:
        item["host"] = options.host
    if "log" not in item:  # ECS-style origin, as Filebeat adds it
        item["log"] = {"file": {"path": event.path}, "offset": event.raw.start}
    return item
