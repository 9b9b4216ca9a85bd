"""Time-ordered event ids (ULID: 48-bit millisecond time + 80 random bits, Crockford base32)."""

from __future__ import annotations

import os
import re
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two base32 characters. (base64.b32encode is written in Python on
# 3.11 and cost ~20 % of ingest CPU; ids are made on the ingest hot path.)
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
# A random byte to one character: its low 5 bits, uniform because 256 is a multiple of 32.
_BYTE_TO_CHAR = bytes(ord(_CROCKFORD[i % 32]) for i in range(256))
_RANDOM_CHARS = 16  # the 80 random bits are exactly the last 16 characters
_POOL_IDS = 1024
_entropy = threading.local()


def _reset_entropy() -> None:
    # A forked child must not hand out the same random parts as its parent.
    _entropy.__dict__.clear()


os.register_at_fork(after_in_child=_reset_entropy)


def _random_chars() -> str:
    """The 16 random characters of a ULID, from a per-thread pool of 1,024 made at once.

    One os.urandom per id released and retook the GIL each time: with four ingest threads that
    was a thread switch per event, measured at over a third of the API's CPU. The pool is handed
    out by a list iterator kept in the thread-local: one attribute read and one call per id.
    """
    take = getattr(_entropy, "take", None)
    if take is not None:
        try:
            chars: str = take()
        except StopIteration:
            pass
        else:
            return chars
    pool = os.urandom(_RANDOM_CHARS * _POOL_IDS).translate(_BYTE_TO_CHAR).decode("ascii")
    take = _entropy.take = iter([pool[at : at + _RANDOM_CHARS] for at in range(0, len(pool), _RANDOM_CHARS)]).__next__
    chars = take()
    return chars


# The first 6 characters of the time part change every 2^20 ms (~17 minutes): kept, not rebuilt.
_high_time: tuple[int, str] = (-1, "")


def _time_chars(ms: int) -> str:
    """The 10 characters of a 48-bit millisecond time (the leading one carries 3 bits)."""
    global _high_time
    pairs = _PAIRS
    high, prefix = _high_time
    if ms >> 20 != high:
        high = ms >> 20
        prefix = pairs[(ms >> 40) & 1023] + pairs[(ms >> 30) & 1023] + pairs[high & 1023]
        _high_time = (high, prefix)  # one tuple: threads never see a prefix with another's key
    return prefix + pairs[(ms >> 10) & 1023] + pairs[ms & 1023]


def new_ulid(ms: int | None = None, entropy: bytes | None = None) -> str:
    """A 26-character ULID; lexicographic order follows ``ms`` (default: now).

    ``entropy`` (10 bytes) fixes the random part, for tests; by default it is random.
    """
    stamp = int(time.time() * 1000) if ms is None else ms
    if entropy is None:
        return _time_chars(stamp) + _random_chars()
    value = int.from_bytes(entropy, "big")
    return _time_chars(stamp) + "".join([_PAIRS[(value >> shift) & 1023] for shift in range(70, -1, -10)])


# A ULID as new_ulid writes it; int(..., 32) then reads the time after mapping Crockford's
# alphabet onto Python's base-32 digits (C speed: this runs twice per stored event).
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_TO_BASE32 = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")


def ulid_ms(text: str) -> int | None:
    """The millisecond of a ULID as ``new_ulid`` writes it (26 upper-case characters); else None."""
    if len(text) != 26 or _ULID.fullmatch(text) is None:
        return None
    return int(text[:10].translate(_TO_BASE32), 32)
