"""EmbeddedStore: the LogStore port over day partitions (see layout.py for the row-id scheme)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.base import (
    TOTAL_HITS_CAP,
    BucketCount,
    GroupCount,
    MessageCount,
    SearchPage,
    StoreStats,
    WriteResult,
)
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter, SearchRequest

from .layout import DAY_US, MINUTE_US, SEQ_BITS, day_from_name, day_of, partition_name, rid_bounds, ts_of_rid
from .partition import (
    ROW_COLUMNS,
    PartitionWriter,
    connect,
    count_raw,
    group_raw,
    group_rollup,
    row_to_event,
    select_events,
)
from .sql import build_where, is_plain

Grouped = Counter[tuple[int, str, int]]


class EmbeddedStore:
    """Day-partitioned SQLite + FTS5 store. One process writes (the processor); any number read."""

    kind = "embedded"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._writers: dict[int, PartitionWriter] = {}
        self._write_lock = threading.Lock()
        self._local = threading.local()

    # -- partitions -----------------------------------------------------------------------
    def _days(self) -> list[int]:
        days = (day_from_name(name) for name in os.listdir(self.directory))
        return sorted(d for d in days if d is not None)

    def _reader(self, day: int) -> sqlite3.Connection:
        conns: dict[int, sqlite3.Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(day)
        if conn is None:
            conn = conns[day] = connect(self.directory / partition_name(day), create=False)
            conn.execute("PRAGMA query_only=1")
        return conn

    def _scan(self, flt: LogFilter, newest_first: bool = True) -> Iterator[tuple[int, sqlite3.Connection, int, int]]:
        """(day, connection, lo rid, hi rid) for every partition overlapping the filter's time range."""
        days = self._days()
        conns: dict[int, sqlite3.Connection] = getattr(self._local, "conns", {})
        for gone in set(conns) - set(days):
            conns.pop(gone).close()
        for day in reversed(days) if newest_first else days:
            bounds = rid_bounds(day, flt.start_us, flt.end_us)
            if bounds is not None:
                yield day, self._reader(day), bounds[0], bounds[1]

    # -- writes ---------------------------------------------------------------------------
    def write(self, events: Sequence[LogEvent]) -> WriteResult:
        by_day: dict[int, list[LogEvent]] = {}
        for event in events:
            by_day.setdefault(day_of(event.timestamp), []).append(event)
        result = WriteResult()
        with self._write_lock:
            for day, batch in sorted(by_day.items()):
                writer = self._writers.get(day)
                if writer is None:
                    writer = self._writers[day] = PartitionWriter(self.directory / partition_name(day), day)
                try:
                    stored, duplicates = writer.write(batch)
                except sqlite3.OperationalError as exc:  # disk full, I/O error: retry the batch later
                    raise BackendUnavailable(f"embedded store write failed: {exc}") from exc
                result.stored += stored
                result.duplicates += duplicates
        return result

    # -- reads ----------------------------------------------------------------------------
    def search(self, request: SearchRequest) -> SearchPage:
        wanted = request.offset + request.limit
        events: list[LogEvent] = []
        total = 0
        for day, conn, lo, hi in self._scan(request.filter, newest_first=not request.oldest_first):
            where = build_where(request.filter, lo, hi)
            if len(events) < wanted:
                events += select_events(conn, day, where, limit=wanted - len(events),
                                        oldest_first=request.oldest_first)
            if total <= TOTAL_HITS_CAP:
                total += count_raw(conn, where, cap=TOTAL_HITS_CAP + 1 - total)
        exact = total <= TOTAL_HITS_CAP
        return SearchPage(total=min(total, TOTAL_HITS_CAP), total_exact=exact, events=events[request.offset :])

    def get(self, event_id: str) -> LogEvent | None:
        for day in reversed(self._days()):
            row = self._reader(day).execute(f"SELECT {ROW_COLUMNS} FROM events e WHERE e.id = ?", (event_id,)).fetchone()
            if row is not None:
                return row_to_event(row, day)
        return None

    def _grouped(self, flt: LogFilter, bucket_us: int | None) -> Grouped:
        """Counts per (bucket, service, level); rollups for whole minutes, rows for the edges."""
        totals: Grouped = Counter()
        use_rollup = is_plain(flt) and (bucket_us is None or bucket_us % MINUTE_US == 0)
        for day, conn, lo, hi in self._scan(flt):
            pieces: list[tuple[int, int]] = [(lo, hi)]
            if use_rollup:
                start = day * DAY_US + (lo >> SEQ_BITS)
                end = day * DAY_US + ((hi + 1) >> SEQ_BITS)
                first_minute = -(-start // MINUTE_US)
                end_minute = end // MINUTE_US
                if first_minute < end_minute:
                    minutes = None if bucket_us is None else bucket_us // MINUTE_US
                    for row in group_rollup(conn, flt, first_minute, end_minute - 1, minutes):
                        totals[(row[0], row[1], row[2])] += row[3]
                    pieces = []
                    base = day * DAY_US
                    if start < first_minute * MINUTE_US:
                        pieces.append((lo, ((first_minute * MINUTE_US - base) << SEQ_BITS) - 1))
                    if end_minute * MINUTE_US < end:
                        pieces.append(((end_minute * MINUTE_US - base) << SEQ_BITS, hi))
            for piece_lo, piece_hi in pieces:
                for row in group_raw(conn, day, flt, piece_lo, piece_hi, bucket_us):
                    totals[(row[0], row[1], row[2])] += row[3]
        return totals

    def count(self, flt: LogFilter) -> int:
        if is_plain(flt):
            return sum(self._grouped(flt, None).values())
        return sum(count_raw(conn, build_where(flt, lo, hi)) for _, conn, lo, hi in self._scan(flt))

    def counts_by_service_level(self, flt: LogFilter) -> list[GroupCount]:
        by_group: Counter[tuple[str, int]] = Counter()
        for (_, service, level), n in self._grouped(flt, None).items():
            by_group[(service, level)] += n
        return [GroupCount(s, Level(lv), n) for (s, lv), n in sorted(by_group.items()) if n]

    def histogram(self, flt: LogFilter, interval_s: int) -> list[BucketCount]:
        by_bucket: Counter[tuple[int, int]] = Counter()
        for (bucket, _, level), n in self._grouped(flt, interval_s * 1_000_000).items():
            by_bucket[(bucket, level)] += n
        return [BucketCount(b, Level(lv), n) for (b, lv), n in sorted(by_bucket.items()) if n]

    def top_messages(self, flt: LogFilter, limit: int) -> list[MessageCount]:
        counts: Counter[tuple[str, str]] = Counter()
        last_seen: dict[tuple[str, str], int] = {}
        for day, conn, lo, hi in self._scan(flt):
            where = build_where(flt, lo, hi, plain_levels_index=False)
            sql = (f"SELECT e.message, e.service, count(*), max({where.rid_column}) FROM {where.source}{where.sql()} "
                   "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?")
            for message, service, n, top in conn.execute(sql, [*where.params, max(limit * 20, 200)]):
                key = (message, service)
                counts[key] += n
                last_seen[key] = max(last_seen.get(key, 0), ts_of_rid(top, day))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -last_seen[kv[0]]))[:limit]
        return [MessageCount(m, s, n, last_seen[(m, s)]) for (m, s), n in ranked]

    # -- maintenance ----------------------------------------------------------------------
    def drop_before(self, cutoff_us: int) -> int:
        dropped = 0
        with self._write_lock:
            for day in self._days():
                if (day + 1) * DAY_US > cutoff_us:
                    continue
                writer = self._writers.pop(day, None)
                if writer is not None:
                    writer.close()
                base = self.directory / partition_name(day)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{base}{suffix}").unlink(missing_ok=True)
                dropped += 1
        return dropped

    def refresh(self) -> None:
        """Nothing to do: a committed SQLite transaction is visible to the next read."""

    def stats(self) -> StoreStats:
        documents = 0
        size = 0
        days = self._days()
        try:
            for day in days:
                documents += int(self._reader(day).execute("SELECT coalesce(sum(count), 0) FROM rollup").fetchone()[0])
                for suffix in ("", "-wal"):
                    path = Path(f"{self.directory / partition_name(day)}{suffix}")
                    size += path.stat().st_size if path.exists() else 0
        except sqlite3.Error as exc:
            return StoreStats(kind=self.kind, healthy=False, detail=str(exc))
        return StoreStats(kind=self.kind, healthy=True, documents=documents, bytes_on_disk=size, partitions=len(days))

    def close(self) -> None:
        with self._write_lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()
        conns: dict[int, sqlite3.Connection] = getattr(self._local, "conns", {})
        for conn in conns.values():
            conn.close()
        conns.clear()
