"""Time-ordered event ids (ULID: 48-bit millisecond time + 80 random bits, Crockford base32)."""

from __future__ import annotations

import base64
import os
import time

# base64.b32encode (C) uses RFC 4648's alphabet; translating its output to Crockford's is far
# faster than encoding 26 characters in a Python loop (ids are made on the ingest hot path).
_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = bytes.maketrans(_RFC4648.encode(), _CROCKFORD.encode())


def new_ulid(ms: int | None = None, entropy: bytes | None = None) -> str:
    """A 26-character ULID; lexicographic order follows ``ms`` (default: now)."""
    stamp = int(time.time() * 1000) if ms is None else ms
    rand = entropy if entropy is not None else os.urandom(10)
    value = (stamp << 80) | int.from_bytes(rand, "big")
    # 130 bits (two leading zeros + 128) as the top of 17 bytes: the first 26 base32 characters.
    encoded = base64.b32encode((value << 6).to_bytes(17, "big"))[:26]
    return encoded.translate(_TO_CROCKFORD).decode()
