"""GELF: field mapping (the spec's example), decompression by magic bytes, chunk reassembly with
the chunkers of the real clients (graypy, pygelf)."""

from __future__ import annotations

import gzip
import os
import zlib

import orjson
import pytest
from graypy.handler import BaseGELFChunker
from pygelf import gelf as pygelf

from logflow.ingest.decode import INVALID_UTF8_FLAG
from logflow.ingest.protocols.gelf import ChunkAssembler, GelfError, gelf_fields, gelf_http_items, gelf_item, inflate

# The example of the GELF 1.1 specification.
SPEC_EXAMPLE = {
    "version": "1.1",
    "host": "example.org",
    "short_message": "A short message that helps you identify what is going on",
    "full_message": "Backtrace here\n\nmore stuff",
    "timestamp": 1385053862.3072,
    "level": 1,
    "_user_id": 9001,
    "_some_info": "foo",
    "_some_env_var": "bar",
}


def test_spec_example() -> None:
    assert gelf_fields(SPEC_EXAMPLE) == {
        "message": "A short message that helps you identify what is going on",
        "full_message": "Backtrace here\n\nmore stuff",
        "host": "example.org",
        "timestamp": 1385053862.3072,
        "level": 1,
        "user_id": 9001,
        "some_info": "foo",
        "some_env_var": "bar",
    }


def test_service_correlation_and_reserved_names() -> None:
    doc = {"short_message": "m", "host": "h", "facility": "my.logger", "_app_name": "billing",
           "_trace_id": "abc", "_span_id": "def", "_id": "not-an-event-id", "_host": "inner", "_message": "x",
           "_line": 7, "line": 8}
    assert gelf_fields(doc) == {
        "message": "m", "host": "h", "service": "billing", "facility": "my.logger", "trace_id": "abc",
        "span_id": "def", "_id": "not-an-event-id", "_host": "inner", "_message": "x", "line": 7, "_line": 8,
    }
    # graypy puts the logger name in GELF 1.0's facility: without a service field it names the service
    assert gelf_fields({"short_message": "m", "facility": "app.db"})["service"] == "app.db"
    assert gelf_fields({"short_message": "m", "_service": "a", "_app": "b"})["service"] == "a"


def test_message_fallbacks_and_refusals() -> None:
    assert gelf_fields({"full_message": "only the full one"}) == {"message": "only the full one"}
    assert gelf_fields({"short_message": "  ", "full_message": "full"}) == {"message": "full"}
    for bad in ({"host": "h"}, {"short_message": ""}, {"short_message": {"a": 1}}, [1], "text"):
        with pytest.raises(GelfError):
            gelf_fields(bad)


def test_inflate_by_magic_bytes() -> None:
    raw = orjson.dumps(SPEC_EXAMPLE)
    assert inflate(raw, 10_000) == raw
    assert inflate(zlib.compress(raw), 10_000) == raw
    assert inflate(gzip.compress(raw), 10_000) == raw
    bomb = zlib.compress(b"{" + b" " * 5_000_000 + b"}")
    with pytest.raises(GelfError, match="larger than"):
        inflate(bomb, 100_000)
    with pytest.raises(GelfError, match="not valid zlib"):
        inflate(b"\x78\x9c" + os.urandom(40), 10_000)
    with pytest.raises(GelfError, match="truncated gzip"):
        inflate(gzip.compress(raw)[:-12], 10_000)


def test_item_errors_are_400_with_reasons() -> None:
    assert gelf_item(b"{not json", 0, 1000).error.code == 400  # type: ignore[union-attr]
    assert "short_message" in gelf_item(b'{"host": "h"}', 0, 1000).error.reason  # type: ignore[union-attr]
    assert "larger than" in gelf_item(orjson.dumps({"short_message": "x" * 2000}), 0, 1000).error.reason  # type: ignore[union-attr]
    repaired = gelf_item(b'{"short_message": "caf\xe9"}', 3, 1000)
    assert repaired.error is None and repaired.flags == [INVALID_UTF8_FLAG] and repaired.index == 3
    assert repaired.value == {"message": "caf\ufffd"}


def test_http_body_single_pretty_or_bulk() -> None:
    limits = {"max_body_bytes": 100_000, "max_event_bytes": 10_000}
    single = gelf_http_items(zlib.compress(orjson.dumps(SPEC_EXAMPLE)), **limits)
    assert [i.value["message"] for i in single] == [SPEC_EXAMPLE["short_message"]]  # type: ignore[index]
    pretty = gelf_http_items(orjson.dumps(SPEC_EXAMPLE, option=orjson.OPT_INDENT_2), **limits)
    assert len(pretty) == 1 and pretty[0].error is None
    bulk = gelf_http_items(b'{"short_message": "a"}\n{broken\n\n{"short_message": "c"}\n', **limits)
    assert [(i.index, i.error is None) for i in bulk] == [(0, True), (1, False), (2, True)]
    with pytest.raises(GelfError):
        gelf_http_items(b"  \n", **limits)


def _graypy_chunks(payload: bytes, size: int) -> list[bytes]:
    return list(BaseGELFChunker(chunk_size=size).chunk_message(payload))


def test_reassembly_with_real_chunkers_in_any_order_with_duplicates() -> None:
    payload = zlib.compress(orjson.dumps({"short_message": os.urandom(6000).hex()}))
    for chunks in (_graypy_chunks(payload, 1000), list(pygelf.split(payload, 700))):
        assert len(chunks) > 5
        assembler = ChunkAssembler(max_message_bytes=1 << 20)
        shuffled = chunks[::-1] + chunks[:2]  # reversed, then two duplicates
        results = [assembler.add(chunk, now=0.0) for chunk in shuffled]
        assert results.count(None) == len(shuffled) - 1
        assert next(r for r in results if r is not None) == payload
        assert assembler.pending == 0 and assembler.incomplete == 0


def test_incomplete_messages_expire_and_are_counted() -> None:
    assembler = ChunkAssembler(max_message_bytes=1 << 20, timeout_s=5.0)
    first = _graypy_chunks(os.urandom(3000), 1000)
    second = _graypy_chunks(os.urandom(3000), 1000)
    assert assembler.add(first[0], now=0.0) is None
    assert assembler.add(second[0], now=3.0) is None
    assert assembler.expire(now=4.9) == 0
    assert assembler.expire(now=5.0) == 1 and assembler.pending == 1
    assert assembler.add(first[1], now=5.1) is None  # a late chunk starts over, and is incomplete in turn
    assert assembler.expire(now=20.0) == 2 and assembler.incomplete == 3 and assembler.pending == 0


def test_malformed_chunks_and_bounds() -> None:
    assembler = ChunkAssembler(max_message_bytes=2500, max_buffer_bytes=4000)
    header = b"\x1e\x0f" + b"12345678"
    with pytest.raises(GelfError):
        assembler.add(header + bytes([0, 129]) + b"x", now=0)  # more than 128 chunks
    with pytest.raises(GelfError):
        assembler.add(header + bytes([3, 3]) + b"x", now=0)  # sequence number not below the count
    with pytest.raises(GelfError):
        assembler.add(header, now=0)  # no body
    assert assembler.add(header + bytes([0, 3]) + b"x", now=0) is None
    with pytest.raises(GelfError, match="disagree"):
        assembler.add(header + bytes([1, 4]) + b"y", now=0)
    assert assembler.pending == 0
    with pytest.raises(GelfError, match="larger than 2500"):
        for chunk in _graypy_chunks(os.urandom(6000), 1000):
            assembler.add(chunk, now=0)
    # The buffer bound evicts the oldest partial message, counted as incomplete.
    for _ in range(3):
        assembler.add(_graypy_chunks(os.urandom(3000), 1500)[0], now=0)
    assert assembler.pending == 2 and assembler.incomplete == 1
