"""The normalized log event every protocol produces and every store keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logflow.domain.levels import Level

# Level(n) goes through Enum's call machinery; the processor decodes every queued event.
_LEVEL_BY_NUMBER = {int(level): level for level in Level}  # unknown numbers: KeyError, a dead letter

CORRELATION_FIELDS: tuple[str, ...] = ("trace_id", "span_id", "request_id", "correlation_id")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(ts_us: int) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and microsecond precision."""
    # Integer arithmetic: a float of microseconds since 1970 can be off by one microsecond.
    moment = _EPOCH + timedelta(microseconds=ts_us)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:" \
           f"{moment.second:02d}.{moment.microsecond:06d}Z"


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

    # Wire form used on the queue: compact keys, stable across releases (the queue may hold
    # events written by an older version during an upgrade).
    def to_wire(self) -> bytes:
        doc: dict[str, Any] = {
            "i": self.id, "t": self.timestamp, "l": int(self.level), "s": self.service, "m": self.message,
        }
        if self.host is not None:
            doc["h"] = self.host
        for name in CORRELATION_FIELDS:
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.attributes:
            doc["a"] = self.attributes
        if self.flags:
            doc["f"] = self.flags
        return orjson.dumps(doc)

    @classmethod
    def from_wire(cls, payload: bytes) -> LogEvent:
        doc = orjson.loads(payload)
        get = doc.get
        # Positional, in field order: the processor decodes every queued event (~0.5 µs less each).
        return cls(
            doc["i"], doc["t"], _LEVEL_BY_NUMBER[doc["l"]], doc["s"], doc["m"], get("h"), get("trace_id"),
            get("span_id"), get("request_id"), get("correlation_id"), get("a") or {}, get("f") or [],
        )

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
