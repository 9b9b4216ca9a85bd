"""What a write must know about rows already stored around events behind the high-water mark.

A batch that arrives after a newer one (several concurrent clients, a shipper catching up, a
replay after a crash) asks two questions per event: is this id stored already, and which row
ids of this microsecond are taken. Asked one event at a time they cost two queries each. Here
the milliseconds of such events are grouped into clusters (gaps under 10 ms) and each cluster
is read with one range scan, unless it holds many more stored rows than it has events (a late,
sparse batch over a dense stretch of stored events): then that cluster is left to per-event
queries, whose cost does not depend on what else is stored there.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .layout import DAY_US, MS_US, SEQ_BITS

_MS_SPAN = MS_US << SEQ_BITS  # row ids per millisecond
_GAP = 10 * _MS_SPAN  # milliseconds closer than this share a scan
_ROWS_PER_EVENT = 16  # a scan reading more stored rows than this per event is given up


@dataclass(slots=True)
class StoredNearby:
    """Stored rows of the scanned clusters of milliseconds (row-id ranges ``starts[i]..ends[i]``)."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    top_of_us: dict[int, int] = field(default_factory=dict)  # microsecond's base row id -> highest taken
    # A millisecond's first row id -> (id hash, blk, slot) of its rows whose id is a ULID of it.
    in_time_ids: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)

    def covers(self, rid: int) -> bool:
        """True when ``rid`` lies in a scanned range (whole milliseconds, so its microsecond too)."""
        at = bisect_right(self.starts, rid) - 1
        return at >= 0 and rid <= self.ends[at]

    def _add(self, lo: int, hi: int, rows: list[tuple[int, int, int, int, int]]) -> None:
        self.starts.append(lo)
        self.ends.append(hi)
        for rid, hashed, blk, slot, in_time in rows:
            base = rid >> SEQ_BITS << SEQ_BITS
            if rid > self.top_of_us.get(base, -1):
                self.top_of_us[base] = rid
            if in_time:
                self.in_time_ids.setdefault(rid - rid % _MS_SPAN, []).append((hashed, blk, slot))


def scan_nearby(conn: sqlite3.Connection, day: int, high_water: int, timestamps: Iterable[int]) -> StoredNearby:
    """Scan the clusters of milliseconds of events (by timestamp, µs) that lie at or below ``high_water``."""
    day_us = day * DAY_US
    # Events whose millisecond starts after the high-water mark are left out before any counting:
    # in the common case (a batch newer than everything stored) that is all of them.
    last_ms = (high_water >> SEQ_BITS) // MS_US
    per_ms = Counter(ms for ms in ((ts - day_us) // MS_US for ts in timestamps) if ms <= last_ms)
    clusters: list[list[int]] = []  # [lo, hi, events]
    for ms in sorted(per_ms):
        lo = ms * _MS_SPAN
        if clusters and lo - clusters[-1][1] <= _GAP:
            clusters[-1][1] = lo + _MS_SPAN - 1
            clusters[-1][2] += per_ms[ms]
        else:
            clusters.append([lo, lo + _MS_SPAN - 1, per_ms[ms]])
    nearby = StoredNearby()
    for lo, hi, count in clusters:
        cap = _ROWS_PER_EVENT * count
        rows = conn.execute(
            "SELECT rid, id_hash, blk, slot, id_in_time FROM events WHERE rid BETWEEN ? AND ? LIMIT ?",
            (lo, hi, cap + 1),
        ).fetchall()
        if len(rows) <= cap:
            nearby._add(lo, hi, rows)
    return nearby
