"""Time-ordered event ids (ULID: 48-bit millisecond time + 80 random bits, Crockford base32)."""

from __future__ import annotations

import os
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two base32 characters: a ULID is 13 table lookups. (base64.b32encode is
# written in Python on 3.11 and cost ~20 % of ingest CPU; ids are made on the ingest hot path.)
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -1, -10))


def new_ulid(ms: int | None = None, entropy: bytes | None = None) -> str:
    """A 26-character ULID; lexicographic order follows ``ms`` (default: now)."""
    stamp = int(time.time() * 1000) if ms is None else ms
    rand = entropy if entropy is not None else os.urandom(10)
    value = (stamp << 80) | int.from_bytes(rand, "big")  # 128 bits; the 26 characters carry 130
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


# A ULID as new_ulid writes it; int(..., 32) then reads the time after mapping Crockford's
# alphabet onto Python's base-32 digits (C speed: this runs twice per stored event).
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_TO_BASE32 = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")


def ulid_ms(text: str) -> int | None:
    """The millisecond of a ULID as ``new_ulid`` writes it (26 upper-case characters); else None."""
    if len(text) != 26 or _ULID.fullmatch(text) is None:
        return None
    return int(text[:10].translate(_TO_BASE32), 32)
