"""Grafana Loki push API: JSON or snappy-compressed protobuf ``PushRequest`` in, items out.

The protobuf schema is Loki's ``pkg/push/push.proto`` (read here with the small wire reader in
protowire.py; no generated code)::

    message PushRequest      { repeated StreamAdapter streams = 1; }
    message StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    message EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                               repeated LabelPairAdapter structuredMetadata = 3; }
    message LabelPairAdapter { string name = 1; string value = 2; }

``labels`` is a Prometheus label set in text, ``{job="varlogs", host="a"}``. Stream labels map to
service, level and host (docs/protocols/loki.md); the line is the message, verbatim (a JSON line
stays text, as in Loki); structured metadata become attributes, ``trace_id`` etc. model fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cramjam
import orjson

from logflow.domain.events import CORRELATION_FIELDS, format_timestamp
from logflow.domain.levels import parse_level
from logflow.ingest.decode import INVALID_UTF8_FLAG, BodyError, DecodedItem
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError
from logflow.ingest.protocols import protowire as pw

SERVICE_LABELS = ("service_name", "service", "app", "job")
LEVEL_LABELS = ("level", "severity", "detected_level")
HOST_LABELS = ("host", "hostname", "instance")
_MAX_REASONS = 20  # rejected entries spelled out in a 400 answer


class LabelError(ValueError):
    """A stream's label text is not a valid Prometheus label set."""


# -- Prometheus label-set text ---------------------------------------------------------------------
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34}


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """The string literal starting at ``pos`` (PromQL: "…" or '…' with Go escapes, `…` raw)."""
    quote = text[pos]
    end = len(text)
    if quote == "`":
        close = text.find("`", pos + 1)
        if close < 0:
            raise LabelError("unterminated raw string")
        return text[pos + 1:close], close + 1
    out = bytearray()  # Go escapes are bytes (\xff, \377) that may combine into UTF-8 sequences
    pos += 1
    while pos < end:
        char = text[pos]
        if char == quote:
            return out.decode("utf-8", errors="replace"), pos + 1
        if char == "\n":
            raise LabelError("newline in string")
        if char != "\\":
            out += char.encode("utf-8")
            pos += 1
            continue
        if pos + 1 >= end:
            break
        kind = text[pos + 1]
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            pos += 2
        elif kind in "xuU":
            digits = {"x": 2, "u": 4, "U": 8}[kind]
            raw = text[pos + 2:pos + 2 + digits]
            if len(raw) != digits or any(c not in "0123456789abcdefABCDEF" for c in raw):
                raise LabelError(f"invalid \\{kind} escape")
            number = int(raw, 16)
            if kind == "x":
                out.append(number)
            elif number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
                raise LabelError(f"invalid Unicode code point \\{kind}{raw}")
            else:
                out += chr(number).encode("utf-8")
            pos += 2 + digits
        elif kind in "01234567":
            raw = text[pos + 1:pos + 4]
            if len(raw) != 3 or any(c not in "01234567" for c in raw) or int(raw, 8) > 255:
                raise LabelError("invalid octal escape")
            out.append(int(raw, 8))
            pos += 4
        else:
            raise LabelError(f"unknown escape sequence \\{kind}")
    raise LabelError("unterminated string")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _name(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] in "\"'`":  # Prometheus 3 quotes UTF-8 label names
        return _quoted(text, pos)
    start = pos
    while pos < len(text) and (text[pos] == "_" or (text[pos].isascii() and text[pos].isalnum())):
        pos += 1
    if start == pos or text[start].isdigit():
        raise LabelError(f"expected a label name at position {start}")
    return text[start:pos], pos


def parse_labels(text: str) -> dict[str, str]:
    """``{a="b", c="d"}`` as a dict, as Loki reads a stream (empty values dropped, as absent).

    Raises LabelError for anything else, including duplicate names and an empty set.
    """
    labels: dict[str, str] = {}
    pos = _skip_space(text, 0)
    if pos >= len(text) or text[pos] != "{":
        raise LabelError("expected '{'")
    pos = _skip_space(text, pos + 1)
    while pos < len(text) and text[pos] != "}":
        name, pos = _name(text, pos)
        pos = _skip_space(text, pos)
        if pos >= len(text) or text[pos] != "=" or text[pos:pos + 2] == "=~":
            raise LabelError(f"expected '=' after label {name!r}")
        pos = _skip_space(text, pos + 1)
        if pos >= len(text) or text[pos] not in "\"'`":
            raise LabelError(f"expected a quoted value for label {name!r}")
        value, pos = _quoted(text, pos)
        if name in labels:
            raise LabelError(f"duplicate label name {name!r}")
        labels[name] = value
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        elif pos < len(text) and text[pos] != "}":
            raise LabelError(f"expected ',' or '}}' at position {pos}")
    if pos >= len(text):
        raise LabelError("expected '}'")
    if _skip_space(text, pos + 1) != len(text):
        raise LabelError("unexpected text after '}'")
    labels = {k: v for k, v in labels.items() if v != ""}
    if not labels:
        raise LabelError("at least one label pair is required per stream")
    return labels


# -- mapping ----------------------------------------------------------------------------------------
def stream_fields(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Model fields (service, level, host) taken from a stream's labels, and the remaining labels.

    Each field takes the first label of its list that is present; a level label whose value is
    not a known level (``level="unknown"``) is left as an attribute rather than refusing entries.
    """
    model: dict[str, str] = {}
    rest: dict[str, Any] = dict(labels)
    for target, names in (("service", SERVICE_LABELS), ("host", HOST_LABELS), ("level", LEVEL_LABELS)):
        for name in names:
            value = rest.get(name)
            if value is None or (target == "level" and parse_level(value) is None):
                continue
            model[target] = rest.pop(name)
            break
    return model, rest


@dataclass(slots=True)
class PushBatch:
    """A decoded push: one item per entry, where each came from, and stream-level errors."""

    items: list[DecodedItem] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    stream_errors: list[str] = field(default_factory=list)


class _Builder:
    """Turns (labels, entries) into items, enforcing the per-request and per-entry limits."""

    def __init__(self, limits: IngestLimits) -> None:
        self.limits = limits
        self.batch = PushBatch()

    def _add(self, where: str, value: object = None, error: ItemError | None = None,
             flags: list[str] | None = None) -> None:
        if len(self.batch.items) >= self.limits.max_batch_events:
            raise BodyError(413, f"push has more than {self.limits.max_batch_events} entries")
        self.batch.items.append(DecodedItem(index=len(self.batch.items), value=value, error=error,
                                            flags=flags or []))
        self.batch.where.append(where)

    def entry(self, stream: str, base: tuple[dict[str, str], dict[str, Any]] | ItemError, position: int,
              nanos: int | ItemError, line: str, metadata: dict[str, str], flags: list[str]) -> None:
        where = f"stream '{stream}' entry {position}"
        for error in (base, nanos):
            if isinstance(error, ItemError):
                self._add(where, error=error)
                return
        assert not isinstance(base, ItemError) and not isinstance(nanos, ItemError)
        if len(line.encode("utf-8")) > self.limits.max_event_bytes:
            self._add(where, error=ItemError(400, f"line is longer than {self.limits.max_event_bytes} bytes"))
            return
        model, labels = base
        item: dict[str, Any] = {"message": line, "timestamp": format_timestamp(nanos // 1000), **model}
        attrs = {**labels}
        for name, value in metadata.items():
            if name in CORRELATION_FIELDS and value:
                item[name] = value
            else:
                attrs[name] = value
        item["metadata"] = attrs  # under metadata: a label called "time" or "msg" stays a label
        self._add(where, value=item, flags=flags)

    def stream_error(self, stream: str, reason: str) -> None:
        self.batch.stream_errors.append(f"stream '{stream}': {reason}")


def _stream_base(labels_text: str) -> tuple[dict[str, str], dict[str, Any]] | ItemError:
    try:
        return stream_fields(parse_labels(labels_text))
    except LabelError as exc:
        return ItemError(400, f"error parsing labels {labels_text[:200]} with error: {exc}")


# -- JSON -------------------------------------------------------------------------------------------
def _json_nanos(raw: object) -> int | ItemError:
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return ItemError(400, f"timestamp must be a string of Unix epoch nanoseconds, got {str(raw)[:40]!r}")


def _parse_json(data: bytes, builder: _Builder) -> None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"body is not valid JSON: {exc}") from None
    streams = doc.get("streams") if isinstance(doc, dict) else None
    if not isinstance(streams, list):
        raise BodyError(400, 'body must be a JSON object {"streams": [...]}')
    for s_index, stream in enumerate(streams):
        if not isinstance(stream, dict):
            builder.stream_error(f"#{s_index}", "a stream must be an object")
            continue
        labels = stream.get("stream")
        values = stream.get("values")
        base: tuple[dict[str, str], dict[str, Any]] | ItemError
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            name = f"#{s_index}"
            base = ItemError(400, "'stream' must be an object of string label values")
        else:
            name = "{" + ", ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in labels.items()) + "}"
            present = {k: v for k, v in labels.items() if v != ""}
            base = stream_fields(present) if present else ItemError(400, "at least one label pair is "
                                                                         "required per stream")
        if not isinstance(values, list):
            builder.stream_error(name, "'values' must be an array of [timestamp, line] entries")
            continue
        for e_index, entry in enumerate(values):
            ok = isinstance(entry, list) and len(entry) in (2, 3) and isinstance(entry[1], str)
            meta = entry[2] if ok and len(entry) == 3 else {}
            if not ok or not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                builder.entry(name, ItemError(400, "an entry must be [\"<ns>\", \"<line>\"] or "
                                                   "[\"<ns>\", \"<line>\", {structured metadata}]"),
                              e_index, 0, "", {}, [])
                continue
            builder.entry(name, base, e_index, _json_nanos(entry[0]), entry[1], meta, [])


# -- protobuf ---------------------------------------------------------------------------------------
def _text(value: int | memoryview, number: int, flags: list[str]) -> str:
    """Go strings need not be UTF-8; invalid bytes are replaced and the entry flagged."""
    raw = bytes(pw.as_bytes(value, number))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if INVALID_UTF8_FLAG not in flags:
            flags.append(INVALID_UTF8_FLAG)
        return raw.decode("utf-8", errors="replace")


def _timestamp(payload: memoryview) -> int:
    seconds = nanos = 0
    for number, _, value in pw.fields(payload):
        if number == 1:
            seconds = pw.signed64(pw.as_int(value, number))
        elif number == 2:
            nanos = pw.signed64(pw.as_int(value, number))
    return seconds * 1_000_000_000 + nanos


def _proto_entry(payload: memoryview) -> tuple[int, str, dict[str, str], list[str]]:
    nanos, line = 0, ""
    metadata: dict[str, str] = {}
    flags: list[str] = []
    for number, _, value in pw.fields(payload):
        if number == 1:
            nanos = _timestamp(pw.as_bytes(value, number))
        elif number == 2:
            line = _text(value, number, flags)
        elif number == 3:
            name = text = ""
            for sub, _, sub_value in pw.fields(pw.as_bytes(value, number)):
                if sub == 1:
                    name = _text(sub_value, sub, flags)
                elif sub == 2:
                    text = _text(sub_value, sub, flags)
            metadata[name] = text
    return nanos, line, metadata, flags


def _parse_protobuf(data: bytes, builder: _Builder) -> None:
    try:
        for number, _, stream in pw.fields(data):
            if number != 1:
                continue
            labels_text = ""
            entries: list[memoryview] = []
            for sub, _, value in pw.fields(pw.as_bytes(stream, number)):
                if sub == 1:
                    labels_text = _text(value, sub, [])
                elif sub == 2:
                    entries.append(pw.as_bytes(value, sub))
            base = _stream_base(labels_text)
            if not entries and isinstance(base, ItemError):
                builder.stream_error(labels_text[:200], base.reason)
            for position, entry in enumerate(entries):
                nanos, line, metadata, flags = _proto_entry(entry)
                builder.entry(labels_text[:200], base, position, nanos, line, metadata, flags)
    except pw.WireError as exc:
        raise BodyError(400, f"body is not a Loki PushRequest: {exc}") from None


def _unsnappy(body: bytes, max_bytes: int) -> bytes:
    """Snappy block format (what Promtail and Grafana Agent send), refusing oversized output."""
    try:
        size, _ = pw.read_varint(body, 0)  # the block format starts with the decompressed length
    except pw.WireError:
        raise BodyError(400, "body is not snappy-compressed (block format)") from None
    if size > max_bytes:
        raise BodyError(413, f"decompressed body is larger than {max_bytes} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BodyError(400, f"body is not snappy-compressed (block format): {exc}") from None


def is_json(content_type: str | None) -> bool:
    """Loki reads JSON for ``application/json`` and protobuf for anything else (or nothing)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def parse_push(data: bytes, content_type: str | None, snappy: bool, limits: IngestLimits) -> PushBatch:
    """Decode one push body (already free of gzip/deflate). Raises BodyError for an unusable body.

    ``snappy``: the body is snappy-compressed, which Loki assumes for protobuf and honours for
    JSON when Content-Encoding says ``snappy``.
    """
    builder = _Builder(limits)
    if is_json(content_type):
        _parse_json(_unsnappy(data, limits.max_body_bytes) if snappy else data, builder)
    else:
        _parse_protobuf(_unsnappy(data, limits.max_body_bytes), builder)
    return builder.batch


def rejection_text(batch: PushBatch, results: list[tuple[int, str]]) -> str:
    """The plain-text body of a 400 for rejected entries: counts first, then each reason."""
    lines = [f"stream entry rejected: {batch.where[index]}: {reason}" for index, reason in results]
    lines = batch.stream_errors + lines
    total = len(batch.stream_errors) + len(results)
    shown = lines[:_MAX_REASONS]
    if total > len(shown):
        shown.append(f"... and {total - len(shown)} more")
    stored = len(batch.items) - len(results)
    head = f"{len(results)} of {len(batch.items)} entries rejected, {stored} stored"
    if batch.stream_errors:
        head += f"; {len(batch.stream_errors)} invalid streams"
    return head + "\n" + "\n".join(shown) + "\n"
