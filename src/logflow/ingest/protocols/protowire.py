"""A minimal Protocol Buffers wire-format reader and writer.

Enough for the few small messages LogFlow reads or writes without generated code: Loki's
``PushRequest`` (see loki.py for its .proto) and the ``google.rpc.Status`` error body of OTLP/HTTP.
Unknown fields are skipped, as protobuf parsers do; any truncation or impossible length raises
``WireError`` so a garbled body is refused instead of half-read.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    end = len(data)
    for _ in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
    raise WireError("varint longer than 10 bytes")


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field number, wire type, value)`` for each field of one message.

    Values are ints for VARINT/I64/I32 (fixed-width ones little-endian, unsigned) and memoryviews
    for LEN (nested messages, strings, bytes, packed repeated fields). Groups are refused: no
    message read here uses them.
    """
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        key, pos = read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(view, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            size, pos = read_varint(view, pos)
            if pos + size > end:
                raise WireError(f"field {number} claims {size} bytes, only {end - pos} left")
            yield number, wire_type, view[pos:pos + size]
            pos += size
        elif wire_type in (I64, I32):
            width = 8 if wire_type == I64 else 4
            if pos + width > end:
                raise WireError(f"truncated fixed-width field {number}")
            yield number, wire_type, int.from_bytes(view[pos:pos + width], "little")
            pos += width
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {number})")


def as_bytes(value: int | memoryview, number: int) -> memoryview:
    """A LEN field's payload, or WireError when the field has another wire type."""
    if isinstance(value, int):
        raise WireError(f"field {number} should be length-delimited")
    return value


def as_int(value: int | memoryview, number: int) -> int:
    """A VARINT/fixed field's value, or WireError when the field is length-delimited."""
    if not isinstance(value, int):
        raise WireError(f"field {number} should be a number")
    return value


def as_text(value: int | memoryview, number: int) -> str:
    """A ``string`` field (protobuf requires valid UTF-8 there)."""
    try:
        return bytes(as_bytes(value, number)).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"field {number} is not valid UTF-8") from None


def signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as protobuf's two's-complement ``int64``."""
    return value - (1 << 64) if value >= 1 << 63 else value


# -- writing ---------------------------------------------------------------------------------------
def varint(value: int) -> bytes:
    """``value`` as a varint (negative numbers as 64-bit two's complement, as protobuf does)."""
    value &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | LEN) + varint(len(payload)) + payload


def rpc_status(code: int, message: str) -> bytes:
    """A serialized ``google.rpc.Status`` {int32 code = 1; string message = 2} (no details)."""
    out = b""
    if code:
        out += field_varint(1, code)
    if message:
        out += field_bytes(2, message.encode("utf-8"))
    return out
