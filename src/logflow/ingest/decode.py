"""Request bodies to JSON items: one object, an array, or NDJSON; optionally gzip/deflate encoded."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError

INVALID_UTF8_FLAG = "invalid_utf8"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines",
                "text/plain")


class BodyError(Exception):
    """The whole request body is unusable (as opposed to one bad item in it)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class DecodedItem:
    """One item of a batch: its parsed value or why it could not be parsed."""

    index: int
    value: object = None
    error: ItemError | None = None
    line: int | None = None
    # What decoding had to repair; an immutable empty default, as nearly every item has none.
    flags: Sequence[str] = ()


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, refusing anything that inflates beyond ``max_bytes`` (zip bombs)."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or identity")
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BodyError(400, f"body is not valid {name}: {exc}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise BodyError(413, f"decompressed body is larger than {max_bytes} bytes")
    return data


def loads_json(raw: bytes) -> tuple[object, Sequence[str]]:
    """Parse JSON; invalid UTF-8 is replaced (U+FFFD) and flagged instead of failing the item."""
    try:
        return orjson.loads(raw), ()
    except orjson.JSONDecodeError as exc:
        return _repaired(raw, exc)


def _repaired(raw: bytes, failure: orjson.JSONDecodeError) -> tuple[object, Sequence[str]]:
    """``raw`` failed to parse with ``failure``: parsed with invalid UTF-8 replaced, or ``failure`` raised."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return orjson.loads(raw.decode("utf-8", errors="replace")), [INVALID_UTF8_FLAG]
    raise failure


def _ndjson(data: bytes, limits: IngestLimits) -> list[DecodedItem]:
    items: list[DecodedItem] = []
    append, max_bytes = items.append, limits.max_event_bytes
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    for line_no, raw_line in enumerate(data.split(b"\n"), start=1):
        line = raw_line.strip()
        if not line:
            continue
        if len(line) > max_bytes:
            error = ItemError(413, f"line {line_no} is larger than {max_bytes} bytes")
            append(DecodedItem(len(items), None, error, line_no))
            continue
        try:
            # orjson straight away, the repair only for a line that fails: this runs once per event.
            append(DecodedItem(len(items), loads(line), None, line_no))
            continue
        except JSONDecodeError as exc:
            failure = exc
        try:
            value, flags = _repaired(line, failure)
        except JSONDecodeError as exc:
            append(DecodedItem(len(items), None, ItemError(400, f"line {line_no} is not valid JSON: {exc}"), line_no))
        else:
            append(DecodedItem(len(items), value, None, line_no, flags))
    return items


def decode_json_items(data: bytes, content_type: str | None, limits: IngestLimits) -> list[DecodedItem]:
    """Split a (decompressed) body into items. Raises BodyError only when nothing is usable."""
    if not data.strip():
        raise BodyError(400, "empty body: send a JSON object, a JSON array or NDJSON lines")
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media in NDJSON_TYPES:
        items = _ndjson(data, limits)
    else:
        try:
            parsed, flags = loads_json(data)
        except orjson.JSONDecodeError as exc:
            # Many shippers send NDJSON labelled application/json; accept it when it splits cleanly.
            if b"\n" in data.strip():
                items = _ndjson(data, limits)
            else:
                raise BodyError(400, f"body is not valid JSON: {exc}") from None
        else:
            values = parsed if isinstance(parsed, list) else [parsed]
            items = [DecodedItem(index=i, value=v, flags=list(flags)) for i, v in enumerate(values)]
            if len(data) > limits.max_event_bytes:
                for item in items:
                    if len(orjson.dumps(item.value)) > limits.max_event_bytes:
                        item.error = ItemError(413, f"event is larger than {limits.max_event_bytes} bytes")
    if not items:
        raise BodyError(400, "no events in body")
    if len(items) > limits.max_batch_events:
        raise BodyError(413, f"batch has {len(items)} events; the limit is {limits.max_batch_events}")
    return items
