"""Compressed document blocks: the bulky part of each event (id, message, host, attributes).

Events of one write are stored as zstd-compressed blocks of up to BLOCK_EVENTS documents; the
``events`` table keeps only what queries filter on plus (block, slot). Logs compress several
times better in blocks than row by row, because neighbouring lines share most of their text.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import threading
import zlib
from collections import OrderedDict
from typing import Any

import orjson
import zstandard

from logflow.domain.attributes import canonical_text
from logflow.domain.events import LogEvent

BLOCK_EVENTS = 512
# Level 1: 0.55 µs per event against 1.8 at level 5 (the old setting), for 1-2 B/event more
# (measured on generated logs: 58.8 B/event at 1, 60.3 at 5 with the old offset table).
_LEVEL = 1
_CACHE_BLOCKS = 64  # decompressed blocks (~150 KiB each) kept per reader: one per API thread and partition
# A block of JSON lines starts with this. Older blocks start with their u32 document count,
# whose upper two bytes are zero: the two kinds cannot be mistaken.
_LINES_MAGIC = b"LFJ\n"

Doc = dict[str, Any]


def id_hash(event_id: str) -> int:
    """A signed 32-bit hash of an event id: the key of the id index.

    Collisions only cost a look at the stored document (every hit is confirmed against the full
    id), so a 4-byte CRC serves where a 64-bit digest would double the index's key size.
    """
    return zlib.crc32(event_id.encode()) - 0x8000_0000


def message_hash(text: str) -> int:
    """A stable signed 48-bit hash of a message (the 6-byte SQLite integer), for grouping by message.

    Two distinct messages of one day share a hash with odds of about 1 in 5 at 10 million distinct
    messages, and then only merge their counts in the top-messages list.
    """
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "big", signed=True)


class BlockCodec:
    """Compress and decompress blocks; one instance per thread (zstd contexts are not thread-safe).

    A block is one zstd frame of ``LFJ\\n`` and the documents as JSON lines. Compact JSON never
    holds a raw newline, so no offset table is needed (it cost ~5 B/event compressed). Blocks of
    store format 4 (``u32 count, u32 end offset per document, documents``) are still read.
    """

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=_LEVEL)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, docs: list[bytes]) -> bytes:
        """Compress documents, each compact JSON without a newline (see ``document_json``)."""
        return self._compressor.compress(_LINES_MAGIC + b"\n".join(docs))

    def decode(self, data: bytes) -> list[bytes]:
        """The documents of a compressed block, in slot order."""
        raw = self._decompressor.decompress(data)
        if raw[:4] == _LINES_MAGIC:
            return raw[4:].split(b"\n")
        (count,) = struct.unpack_from("<I", raw, 0)
        base = 4 + 4 * count
        ends = struct.unpack_from(f"<{count}I", raw, 4)
        return [raw[base + start : base + end] for start, end in zip((0, *ends), ends, strict=False)]


def document_json(event: LogEvent) -> bytes:
    """An event's document as one JSON line: its body as it crossed the queue, else encoded here.

    Queued bodies are compact JSON and hold no raw newline; one that does (a payload not written
    by LogFlow) is encoded again rather than split across two slots.
    """
    if event.body_json is not None and b"\n" not in event.body_json:
        return event.body_json
    return orjson.dumps(event.body())


def block_doc(docs: list[bytes], slot: int) -> Doc:
    """Document ``slot`` of a decoded block; {} when the slot does not exist."""
    if slot >= len(docs):
        return {}
    doc: Doc = orjson.loads(docs[slot])
    return doc


class BlockReader:
    """Reads documents by (block, slot) through a small per-connection LRU of decompressed blocks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._codec = BlockCodec()
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def block(self, blk: int) -> list[bytes]:
        with self._lock:
            raw = self._cache.get(blk)
            if raw is not None:
                self._cache.move_to_end(blk)
                return raw
        row = self._conn.execute("SELECT data FROM blocks WHERE blk = ?", (blk,)).fetchone()
        raw = self._codec.decode(row[0]) if row is not None else []
        with self._lock:
            self._cache[blk] = raw
            while len(self._cache) > _CACHE_BLOCKS:
                self._cache.popitem(last=False)
        return raw

    def doc(self, blk: int, slot: int) -> Doc:
        return block_doc(self.block(blk), slot)

    def attribute_text(self, blk: int, slot: int, key: str) -> str | None:
        """The canonical text of a top-level scalar attribute (what field filters compare)."""
        attributes = self.doc(blk, slot).get("a")
        if not isinstance(attributes, dict) or key not in attributes:
            return None
        return canonical_text(attributes[key])

    def message_hash_at(self, blk: int, slot: int) -> int:
        message = self.doc(blk, slot).get("m")
        return message_hash(message if isinstance(message, str) else "")

    def install(self) -> None:
        """Register the SQL functions that read documents.

        ``lf_attr(blk, slot, key)`` is an attribute's canonical text (attribute filters);
        ``lf_msg_hash(blk, slot)`` is the message hash of a row that does not store one (only
        error rows do: the top-errors list is what groups by message).
        """
        self._conn.create_function("lf_attr", 3, self.attribute_text, deterministic=True)
        self._conn.create_function("lf_msg_hash", 2, self.message_hash_at, deterministic=True)
