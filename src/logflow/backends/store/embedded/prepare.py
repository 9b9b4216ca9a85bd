"""The CPU-bound half of an embedded write, as pure functions another process can run.

Decoding queue payloads, tokenizing messages, hashing and compressing documents need nothing
from the partition files. The processor runs ``prepare_payloads`` for the next batch in a helper
process while the current one is written (see ingest/processor.py); ``EmbeddedStore.write``
calls ``prepare_events`` in place. Either way the partition writer receives the same form:
per day, one ``Item`` per event and the events' documents already compressed into blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

from logflow.backends.store.base import PreparedBatch
from logflow.domain.events import WIRE_ERRORS, LogEvent, check_wire_fields, read_wire
from logflow.domain.ids import ulid_ms
from logflow.domain.text import tokenize

from .blocks import BLOCK_EVENTS, BlockCodec, document_json, id_hash, message_hash
from .layout import DAY_US
from .sql import FIRST_ERROR_LEVEL

# (id, id hash, ULID millisecond of the id or None, timestamp µs, level, service, host,
#  message hash (error rows only, for the top-errors index) or None, message tokens joined by spaces).
# A plain tuple: it crosses the process boundary once per event, by marshal (see prepare_worker.py).
Item = tuple[str, int, int | None, int, int, str, str | None, int | None, str]
# Positions of the fields the writer reads by index (Final literals, so item[TS] has a type).
ID: Final = 0
STAMP: Final = 2
TS: Final = 3
LEVEL: Final = 4
SERVICE: Final = 5

_local = threading.local()


def codec() -> BlockCodec:
    """This thread's block codec (zstd contexts are not thread-safe)."""
    found: BlockCodec | None = getattr(_local, "codec", None)
    if found is None:
        found = _local.codec = BlockCodec()
    return found


# The events of one day partition: (day, items, their documents in blocks of BLOCK_EVENTS in
# item order). A plain tuple, not a class: prepared batches cross from the helper by marshal.
PreparedDay = tuple[int, list[Item], list[bytes]]


def _item(event_id: str, ts: int, level: int, service: str, host: str | None, message: str) -> Item:
    hashed_message = message_hash(message) if level >= FIRST_ERROR_LEVEL else None
    return (event_id, id_hash(event_id), ulid_ms(event_id), ts, level, service, host, hashed_message,
            " ".join(tokenize(message)))


def _prepared(by_day: dict[int, tuple[list[Item], list[bytes]]]) -> list[PreparedDay]:
    return [(day, items, blocks_of(documents)) for day, (items, documents) in sorted(by_day.items())]


def prepare_events(events: Sequence[LogEvent]) -> list[PreparedDay]:
    """Items and compressed blocks per day, days in ascending order."""
    by_day: dict[int, tuple[list[Item], list[bytes]]] = {}
    for e in events:
        items, documents = by_day.setdefault(e.timestamp // DAY_US, ([], []))
        items.append(_item(e.id, e.timestamp, int(e.level), e.service, e.host, e.message))
        documents.append(document_json(e))
    return _prepared(by_day)


def prepare_payloads(payloads: list[bytes]) -> PreparedBatch:
    """Decode queue payloads and prepare the events (the helper process runs this).

    Straight from the wire form, without building LogEvent objects: the body JSON as it crossed
    the queue becomes the stored document. Format-1 payloads (written by older versions) and
    bodies holding a raw newline go through LogEvent, as ``write`` does.
    """
    by_day: dict[int, tuple[list[Item], list[bytes]]] = {}
    undecodable: list[tuple[int, str]] = []
    for index, payload in enumerate(payloads):
        try:
            ts, level, service, doc, body_json = read_wire(payload)
            check_wire_fields(ts, service, doc, payload)  # a payload from elsewhere may hold anything
            event_id, message, host = doc["i"], doc["m"], doc.get("h")
            item = _item(event_id, ts, int(level), service, host, message)
            if body_json is None or b"\n" in body_json:
                document = document_json(LogEvent.from_wire(payload))
            else:
                document = body_json  # stored as it crossed the queue
        except WIRE_ERRORS as exc:
            undecodable.append((index, f"undecodable queue payload: {exc}"))
            continue
        items, documents = by_day.setdefault(ts // DAY_US, ([], []))
        items.append(item)
        documents.append(document)
    return PreparedBatch(undecodable=undecodable, data=_prepared(by_day))


def documents_of(blocks: Sequence[bytes]) -> list[bytes]:
    """The documents of prepared blocks, in item order (for re-blocking after duplicates were dropped)."""
    decode = codec().decode
    return [doc for block in blocks for doc in decode(block)]


def blocks_of(documents: list[bytes]) -> list[bytes]:
    """Documents compressed into blocks of BLOCK_EVENTS, in order."""
    compress = codec().encode
    return [compress(documents[start : start + BLOCK_EVENTS]) for start in range(0, len(documents), BLOCK_EVENTS)]
