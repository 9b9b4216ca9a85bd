"""How events map to partitions and row ids.

Each UTC day is one SQLite file. A row's id (``rid``) is ``(timestamp - day start) << 10 | seq``,
so row-id order is time order: FTS5 and the primary key answer "newest first" and time ranges
by walking row ids, never by sorting. ``seq`` separates up to 1,024 events sharing one
microsecond; the 1,025th moves to the next microsecond (so even a million events stamped with
the same second keep their second, and their millisecond up to a million per millisecond).
37 bits of microseconds in a day plus 10 keep every row id within SQLite's 6-byte integers,
and the small row-id deltas keep the full-text index's posting lists short.
"""

from __future__ import annotations

from datetime import UTC, datetime

DAY_US = 86_400 * 1_000_000
MS_US = 1000
MINUTE_US = 60 * 1_000_000
SEQ_BITS = 10
SEQ_MASK = (1 << SEQ_BITS) - 1
SUFFIX = ".db"


def day_of(ts_us: int) -> int:
    """Day number since the epoch (UTC) of a timestamp."""
    return ts_us // DAY_US


def partition_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d") + SUFFIX


def day_from_name(name: str) -> int | None:
    if not name.endswith(SUFFIX):
        return None
    try:
        parsed = datetime.strptime(name.removesuffix(SUFFIX), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(parsed.timestamp()) // 86_400


def rid_base(ts_us: int, day: int) -> int:
    return (ts_us - day * DAY_US) << SEQ_BITS


def ts_of_rid(rid: int, day: int) -> int:
    return day * DAY_US + (rid >> SEQ_BITS)


def rid_bounds(day: int, start_us: int | None, end_us: int | None) -> tuple[int, int] | None:
    """Inclusive row-id range of [start_us, end_us) within ``day``; None if they do not overlap."""
    day_start = day * DAY_US
    lo = 0 if start_us is None else max(0, start_us - day_start)
    hi = DAY_US if end_us is None else min(DAY_US, end_us - day_start)
    if hi <= lo:
        return None
    return lo << SEQ_BITS, (hi << SEQ_BITS) - 1
