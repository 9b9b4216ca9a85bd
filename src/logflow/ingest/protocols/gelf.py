"""GELF 1.1 (Graylog Extended Log Format): payload decompression, UDP chunk reassembly, field mapping.

A GELF message is one JSON object: ``short_message`` → ``message`` (``full_message`` kept as an
attribute when both are present), ``timestamp`` (seconds, fractions allowed), ``level`` (syslog
severity), ``host``; every ``_name`` additional field becomes the attribute ``name``, except that
``_service``/``_app``-style fields (or else ``facility``) name the service and ``_trace_id``,
``_span_id``, ``_request_id``, ``_correlation_id`` fill the correlation fields (an additional field
whose name is another model field, like ``_id`` or ``_host``, keeps its underscore). Payloads may be
zlib- or gzip-compressed or plain; the magic bytes decide, as in Graylog. See docs/protocols/gelf.md.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from logflow.ingest.decode import INVALID_UTF8_FLAG, DecodedItem
from logflow.ingest.normalize import ItemError

CHUNK_MAGIC = b"\x1e\x0f"
CHUNK_HEADER = 12  # magic (2), message id (8), sequence number (1), sequence count (1)
MAX_CHUNKS = 128
CHUNK_TIMEOUT_S = 5.0
_COMPLETED_MAX = 4096  # the GELF spec: all chunks of a message must arrive within 5 seconds
# Additional fields that name the service, in order of preference (pygelf documents ``_app_name``).
SERVICE_FIELDS = ("_service", "_service_name", "_app", "_app_name", "_application", "_application_name")
# Item keys the pipeline reads as model fields: an additional field of that name keeps its underscore.
_RESERVED = frozenset({
    "id", "service", "host", "metadata", "message", "msg", "timestamp", "@timestamp", "time", "ts", "level",
    "severity", "log.level",
})
_STANDARD = frozenset({"version", "host", "short_message", "full_message", "timestamp", "level"})


class GelfError(ValueError):
    """A GELF payload or chunk that cannot be used; the message says why."""


def _zlib_header(payload: bytes) -> bool:
    return len(payload) >= 2 and payload[0] & 0x0F == 8 and (payload[0] << 8 | payload[1]) % 31 == 0


def inflate(payload: bytes, max_bytes: int) -> bytes:
    """The JSON inside ``payload``: gzip (1f 8b) or zlib (78 ..) by magic bytes, else as is.

    Refuses output beyond ``max_bytes`` (a decompression bomb is refused, not expanded).
    """
    if payload[:2] == b"\x1f\x8b":
        wbits, name = 16 + zlib.MAX_WBITS, "gzip"
    elif _zlib_header(payload):
        wbits, name = zlib.MAX_WBITS, "zlib"
    else:
        if len(payload) > max_bytes:
            raise GelfError(f"message is larger than {max_bytes} bytes")
        return payload
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(payload, max_bytes + 1)
    except zlib.error as exc:
        raise GelfError(f"payload is not valid {name}: {exc}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise GelfError(f"decompressed message is larger than {max_bytes} bytes")
    if not inflater.eof:
        raise GelfError(f"payload is truncated {name}")
    return data


def _message_text(value: object) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def gelf_fields(doc: object) -> dict[str, Any]:
    """One GELF message (parsed JSON) as a LogFlow item; raises GelfError when it is not GELF."""
    if not isinstance(doc, dict):
        raise GelfError(f"a GELF message must be a JSON object, not {type(doc).__name__}")
    short, full = _message_text(doc.get("short_message")), _message_text(doc.get("full_message"))
    message = short if short is not None else full
    if message is None:
        raise GelfError("GELF message without a non-empty short_message")
    item: dict[str, Any] = {"message": message}
    if short is not None and full is not None:
        item["full_message"] = full
    for key in ("host", "timestamp", "level"):
        if doc.get(key) is not None:
            item[key] = doc[key]
    service_key = next((key for key in SERVICE_FIELDS if isinstance(doc.get(key), str | int | float)), None)
    if service_key is None and isinstance(doc.get("facility"), str):
        service_key = "facility"  # GELF 1.0's facility: graypy sends the logger name there
    if service_key is not None:
        item["service"] = doc[service_key]
    for key, value in doc.items():
        if key in _STANDARD or key == service_key:
            continue
        name = key[1:] if key.startswith("_") and len(key) > 1 else key
        if name in _RESERVED:
            name = key
        while name in item or name in _RESERVED:  # never let an attribute replace a model field
            name = "_" + name
        item[name] = value
    return item


def gelf_item(payload: bytes, index: int, max_bytes: int) -> DecodedItem:
    """The ingest item of one complete GELF payload (compressed or not); errors become a 400 item."""
    item = DecodedItem(index=index)
    try:
        data = inflate(payload, max_bytes)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                doc = orjson.loads(data.decode("utf-8", errors="replace"))
                item.flags = [INVALID_UTF8_FLAG]
            else:
                raise
        item.value = gelf_fields(doc)
    except orjson.JSONDecodeError as exc:
        item.error = ItemError(400, f"GELF payload is not valid JSON: {exc}")
    except GelfError as exc:
        item.error = ItemError(400, str(exc))
    return item


def gelf_http_items(data: bytes, *, max_body_bytes: int, max_event_bytes: int) -> list[DecodedItem]:
    """A GELF HTTP body: one message, or several separated by newlines (Graylog's bulk form).

    Raises GelfError when the body as a whole is unusable (bad compression, empty).
    """
    body = inflate(data, max_body_bytes).strip()
    if not body:
        raise GelfError("empty body: send one GELF JSON object")
    if b"\n" in body:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:  # not one (pretty-printed) object: one message per line
            lines = [line for line in body.split(b"\n") if line.strip()]
            return [gelf_item(line, index, max_event_bytes) for index, line in enumerate(lines)]
    return [gelf_item(body, 0, max_event_bytes)]


# -- UDP chunking ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Partial:
    count: int
    first_at: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class ChunkAssembler:
    """Reassembles chunked GELF UDP messages within a bounded buffer.

    A message whose chunks do not all arrive within ``timeout_s`` of its first chunk is dropped and
    counted in ``incomplete``, as is the oldest partial message when the buffer would exceed
    ``max_buffer_bytes``. A message larger than ``max_message_bytes`` is dropped as malformed.
    """

    def __init__(self, *, max_message_bytes: int, max_buffer_bytes: int = 64 * 1024 * 1024,
                 timeout_s: float = CHUNK_TIMEOUT_S) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.timeout_s = timeout_s
        self.incomplete = 0
        self._partials: OrderedDict[bytes, _Partial] = OrderedDict()  # oldest first
        self._buffered = 0
        # Ids completed within timeout_s: a late duplicate chunk of one is ignored, not a new message.
        self._completed: OrderedDict[bytes, float] = OrderedDict()

    def _drop(self, message_id: bytes) -> None:
        partial = self._partials.pop(message_id)
        self._buffered -= partial.size

    def add(self, datagram: bytes, now: float) -> bytes | None:
        """Take one chunk; returns the whole payload once its last chunk arrived, else None.

        Raises GelfError for a chunk that is malformed (its partial message is dropped too).
        """
        if len(datagram) <= CHUNK_HEADER or datagram[:2] != CHUNK_MAGIC:
            raise GelfError("GELF chunk shorter than its 12-byte header")
        message_id, seq, count = datagram[2:10], datagram[10], datagram[11]
        if not 1 <= count <= MAX_CHUNKS or seq >= count:
            if message_id in self._partials:
                self._drop(message_id)
            raise GelfError(f"GELF chunk {seq} of {count}: the count must be 1-{MAX_CHUNKS} and above the number")
        self.expire(now)
        if message_id in self._completed:
            return None
        partial = self._partials.get(message_id)
        if partial is None:
            partial = self._partials[message_id] = _Partial(count=count, first_at=now)
        elif partial.count != count:
            self._drop(message_id)
            raise GelfError(f"GELF chunks of one message disagree on their count ({partial.count} and {count})")
        body = datagram[CHUNK_HEADER:]
        if seq in partial.chunks:
            return None  # a duplicate datagram
        partial.chunks[seq] = body
        partial.size += len(body)
        self._buffered += len(body)
        if partial.size > self.max_message_bytes:
            self._drop(message_id)
            raise GelfError(f"chunked GELF message is larger than {self.max_message_bytes} bytes")
        if len(partial.chunks) == count:
            self._drop(message_id)
            if count > 1:
                self._completed[message_id] = now
                if len(self._completed) > _COMPLETED_MAX:
                    self._completed.popitem(last=False)
            return b"".join(partial.chunks[i] for i in range(count))
        while self._buffered > self.max_buffer_bytes and self._partials:
            self._drop(next(iter(self._partials)))
            self.incomplete += 1
        return None

    def expire(self, now: float) -> int:
        """Drop messages still incomplete ``timeout_s`` after their first chunk; returns how many."""
        while self._completed and now - next(iter(self._completed.values())) >= self.timeout_s:
            self._completed.popitem(last=False)
        expired = 0
        while self._partials:
            message_id, partial = next(iter(self._partials.items()))
            if now - partial.first_at < self.timeout_s:
                break
            self._drop(message_id)
            expired += 1
        self.incomplete += expired
        return expired

    @property
    def pending(self) -> int:
        """Messages waiting for more chunks."""
        return len(self._partials)
