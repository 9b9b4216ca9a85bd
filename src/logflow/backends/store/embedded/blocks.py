"""Compressed document blocks: the bulky part of each event (id, message, host, attributes).

Events of one write are stored as zstd-compressed blocks of up to BLOCK_EVENTS documents; the
``events`` table keeps only what queries filter on plus (block, slot). Logs compress several
times better in blocks than row by row, because neighbouring lines share most of their text.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from typing import Any

import orjson
import zstandard

from logflow.domain.attributes import canonical_text

BLOCK_EVENTS = 512
_LEVEL = 5
_CACHE_BLOCKS = 256

Doc = dict[str, Any]


def hash64(text: str) -> int:
    """A stable signed 64-bit hash (SQLite integers are signed)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


class BlockCodec:
    """Compress and decompress blocks; one instance per thread (zstd contexts are not thread-safe)."""

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=_LEVEL)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, docs: list[Doc]) -> bytes:
        return self._compressor.compress(orjson.dumps(docs))

    def decode(self, data: bytes) -> list[Doc]:
        docs: list[Doc] = orjson.loads(self._decompressor.decompress(data))
        return docs


class BlockReader:
    """Reads documents by (block, slot) through a small per-connection LRU of decoded blocks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._codec = BlockCodec()
        self._cache: OrderedDict[int, list[Doc]] = OrderedDict()
        self._lock = threading.Lock()

    def block(self, blk: int) -> list[Doc]:
        with self._lock:
            docs = self._cache.get(blk)
            if docs is not None:
                self._cache.move_to_end(blk)
                return docs
        row = self._conn.execute("SELECT data FROM blocks WHERE blk = ?", (blk,)).fetchone()
        docs = self._codec.decode(row[0]) if row is not None else []
        with self._lock:
            self._cache[blk] = docs
            while len(self._cache) > _CACHE_BLOCKS:
                self._cache.popitem(last=False)
        return docs

    def doc(self, blk: int, slot: int) -> Doc:
        docs = self.block(blk)
        return docs[slot] if slot < len(docs) else {}

    def attribute_text(self, blk: int, slot: int, key: str) -> str | None:
        """The canonical text of a top-level scalar attribute (what field filters compare)."""
        attributes = self.doc(blk, slot).get("a")
        if not isinstance(attributes, dict) or key not in attributes:
            return None
        return canonical_text(attributes[key])

    def install(self) -> None:
        """Register ``lf_attr(blk, slot, key)`` on the connection for attribute filters in SQL."""
        self._conn.create_function("lf_attr", 3, self.attribute_text, deterministic=True)
